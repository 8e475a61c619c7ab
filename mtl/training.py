"""Training any network on (image, targets, weights) batches, validated on true labels.

Training batches carry, per head, target probabilities and a weight per example (0 where the
example has no label for that head), and for group-robust training a fourth element, each
head's group of every example (`mtl.groups`). A head's loss is its group-robust method's
(`mtl.robust`, by default the weighted mean); a loss weighting combines the heads' losses.
Validation batches carry the true labels
`{"gender", "emotion"}` (-1 where missing), and every network is validated on the same two
questions, whatever its heads: that keeps model selection honest and comparable.
"""

import json
import math
import time
from pathlib import Path

import keras
import tensorflow as tf
from keras import ops

from mtl import distribute
from mtl.budget import Plan
from mtl.checkpoints import (  # noqa: F401  epochs_finished: for callers that ask how far a fit got
    BEST_STATE, BEST_WEIGHTS, RANDOM_STATES, Checkpoints, epochs_finished, keep_arrays, load_arrays, save_arrays,
    save_json, save_weights,
)
from mtl.compat import BuiltBeforeFit, random_generator_states
from mtl.config import ApproachConfig, TrainConfig
from mtl.data.sources import SOURCE
from mtl.errors import UserError
from mtl.losses import masked_cross_entropy, per_example_cross_entropy
from mtl.robust import RobustMethod
from mtl.robust import create as create_robust_method
from mtl.tasks import CLASSES, FOUR, TASKS, task_from_four
from mtl.weighting.base import REPRESENTATION, Weighting, shared_representation, split_variables


def task_probabilities(outputs: dict) -> dict:
    """Gender and emotion probabilities from a network's heads (summing a four-class head)."""
    answers = {task: outputs[task] for task in TASKS if task in outputs}
    if FOUR in outputs:
        for task in TASKS:
            answers.setdefault(task, task_from_four(outputs[FOUR], task))
    return answers


class Trainer(BuiltBeforeFit, keras.Model):
    """Wraps a network for `fit`: masked, weighted losses in training; true-label accuracy in validation."""

    def __init__(
        self, network: keras.Model, weighting: Weighting | None = None, robust: RobustMethod | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self.network = network
        self.heads = list(network.output.keys())
        self.weighting = weighting or Weighting(Weighting.Options("sum"), self.heads)
        self.robust = robust or create_robust_method(ApproachConfig(), self.heads, {})  # robust "none"
        # A weighting that reads gradients of the representation needs it as a tensor of its own: the
        # backbone and the heads are then called apart (same layers, same weights as the network).
        self.backbone, self.head_layers = None, None
        if self.weighting.takes_task_gradients and self.weighting.gradients_of == REPRESENTATION:
            self.backbone, self.head_layers = shared_representation(network, self.heads)
        self.answers = [task for task in TASKS if task in self.heads or FOUR in self.heads]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.head_losses = {head: keras.metrics.Mean(name=f"{head}_loss") for head in self.heads}
        # One accuracy per name, scored against a head's targets in training and a task's true
        # labels in validation: two metrics under one name made Keras log the idle one, 0.
        names = dict.fromkeys(self.heads + self.answers)  # a four-class head adds gender and emotion
        self.accuracy = {name: keras.metrics.CategoricalAccuracy(name=f"{name}_accuracy") for name in names}
        self.worst_group = {task: WorstGroupAccuracy(len(CLASSES[task]), name=f"{task}_worst_group_accuracy") for task in self.answers}
        self.build(network.input.shape)

    def build(self, input_shape):
        # The network is built already; marking the wrapper built lets Keras save and reload its
        # weights before any training (Keras Tuner checkpoints and reloads every trial that way).
        self.built = True

    def call(self, images, training=False):
        return self.network(images, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, *self.head_losses.values(), *self.accuracy.values(), *self.worst_group.values()]

    def fit(self, *args, callbacks=None, **kwargs):
        # Weightings that follow the losses over epochs (DWA) hear of each epoch's end from here.
        epoch_end = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.weighting.end_epoch())
        return super().fit(*args, callbacks=[*(callbacks or ()), epoch_end], **kwargs)

    def train_step(self, data):
        images, targets, weights, *rest = data
        groups = rest[0] if rest else None
        if groups is None and self.robust.needs_groups:
            raise UserError(
                f"The group-robust method {type(self.robust).__name__} needs training batches that carry each "
                "example's group; set options.robust=none or train an approach that builds groups."
            )
        weighting = self.weighting
        with tf.GradientTape(persistent=weighting.takes_task_gradients) as tape:
            if self.backbone is not None:
                # The representation is a tensor of its own here, so each head's gradient can stop at it.
                representation = self.backbone(images, training=True)
                outputs = {head: layer(representation, training=True) for head, layer in self.head_layers.items()}
            else:
                representation = None
                outputs = self.network(images, training=True)
            # Under a strategy each replica holds part of the batch: a head's loss and whether it has
            # labels are those of the whole global batch, so that any number of replicas trains alike.
            # That holds exactly for the weighted mean (robust=none); for the group-robust methods,
            # whose loss is no mean over examples, it is exact on one replica only.
            counts = {head: ops.sum(weights[head]) for head in self.heads}
            global_counts = {head: distribute.global_sum(counts[head]) for head in self.heads}
            losses = {
                head: distribute.global_mean_estimate(
                    self.robust.task_loss(
                        head,
                        per_example_cross_entropy(targets[head], outputs[head]),
                        weights[head],
                        None if groups is None else groups[head],
                    ),
                    counts[head],
                    global_counts[head],
                )
                for head in self.heads
            }
            present = {head: ops.cast(global_counts[head] > 0, "float32") for head in self.heads}
            loss = weighting.total_loss(losses, present)
            # Under a strategy each replica's gradient is its share of the mean, as Keras's own losses are.
            replica_losses = {head: distribute.replica_share(losses[head]) for head in self.heads}
            replica_loss = distribute.replica_share(loss)
        own = weighting.trainable_variables
        owned = {id(variable) for variable in own}
        if weighting.needs_gradients:
            variables, gradients, task_gradients = self.combined_task_gradients(
                tape, replica_losses, present, representation
            )
            total_loss_gradients = tape.gradient(replica_loss, own)
        else:
            variables = [variable for variable in self.trainable_variables if id(variable) not in owned]
            # One backward pass for the network and the weighting's variables alike, as without a weighting.
            all_gradients = tape.gradient(replica_loss, variables + own)
            gradients, total_loss_gradients = all_gradients[: len(variables)], all_gradients[len(variables) :]
            task_gradients = self.task_gradients(tape, replica_losses, representation) if weighting.reads_task_gradients else None
        variables = variables + own
        gradients = gradients + list(weighting.weight_gradients(replica_losses, present, task_gradients, total_loss_gradients))
        self.optimizer.apply(gradients, variables)
        weighting.end_step()
        self.loss_tracker.update_state(loss)
        for head in self.heads:
            self.head_losses[head].update_state(losses[head], sample_weight=present[head])
            self.accuracy[head].update_state(targets[head], outputs[head], sample_weight=weights[head])
        logged = [self.loss_tracker, *self.head_losses.values(), *(self.accuracy[head] for head in self.heads)]
        return distribute.global_results(logged)

    def task_gradients(self, tape, losses: dict, representation, with_own: bool = False) -> dict:
        """`{head: [its loss's gradient of each shared variable, or of the representation]}`, one backward
        pass per head; with `with_own`, `(that, {head: [gradient of the head's own variables]})`."""
        shared, own = split_variables(self.network, self.heads)
        targets = shared if representation is None else [representation]
        task_gradients, own_gradients = {}, {}
        for head in self.heads:
            wanted = targets + (own[head] if with_own else [])
            head_gradients = tape.gradient(losses[head], wanted, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            task_gradients[head] = head_gradients[: len(targets)]
            own_gradients[head] = head_gradients[len(targets) :]
        return (task_gradients, own_gradients) if with_own else task_gradients

    def combined_task_gradients(self, tape, losses: dict, present: dict, representation=None) -> tuple[list, list, dict]:
        """(variables, gradients, task gradients): the weighting combines the heads' gradients of the shared
        variables, or of the representation, whose combination then flows back through the backbone once;
        each head's layer gets its own loss's gradient."""
        shared, own = split_variables(self.network, self.heads)
        task_gradients, own_gradients = self.task_gradients(tape, losses, representation, with_own=True)
        variables = [variable for head in self.heads for variable in own[head]] + shared
        gradients = [gradient for head in self.heads for gradient in own_gradients[head]]
        combined = self.weighting.combine_gradients(losses, present, task_gradients)
        if representation is not None:
            combined = tape.gradient(
                representation, shared, output_gradients=combined[0], unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
        return variables, gradients + list(combined), task_gradients

    def test_step(self, data):
        images, labels = data
        answers = task_probabilities(self.network(images, training=False))
        total = 0.0
        for task in self.answers:
            has_label = ops.cast(labels[task] >= 0, "float32")
            truth = ops.one_hot(ops.maximum(labels[task], 0), len(CLASSES[task]))
            count = ops.sum(has_label)
            total += distribute.global_mean_estimate(
                masked_cross_entropy(truth, answers[task], has_label), count, distribute.global_sum(count)
            )
            self.accuracy[task].update_state(truth, answers[task], sample_weight=has_label)
            true_class = ops.cast(ops.maximum(labels[task], 0), "int32")
            right = ops.cast(ops.cast(ops.argmax(answers[task], axis=-1), "int32") == true_class, "float32")
            source = labels.get(SOURCE)
            source = None if source is None else ops.cast(source, "int32")
            self.worst_group[task].update_state(true_class, right, source, has_label)
        self.loss_tracker.update_state(total)
        logs = distribute.global_results([self.loss_tracker, *(self.accuracy[t] for t in self.answers)])
        # Per replica under a strategy (Keras averages the replicas' values): exact on one device.
        # Across machines Keras averages along a first axis, as for global_results' metrics.
        shape = (1,) if distribute.across_machines() else ()
        logs.update({metric.name: ops.reshape(metric.result(), shape) for metric in self.worst_group.values()})
        if len(self.answers) > 1:
            # A real logged metric, so Keras Tuner and early stopping can select on both tasks at once.
            logs["mean_accuracy"] = ops.mean(ops.stack([logs[f"{t}_accuracy"] for t in self.answers]), axis=0)
            logs["worst_group_accuracy"] = ops.min(ops.stack([logs[f"{t}_worst_group_accuracy"] for t in self.answers]), axis=0)
        return logs


MAX_SOURCES = 8  # training sources per task that validation tells apart; more share the last group


class WorstGroupAccuracy(keras.metrics.Metric):
    """The lowest validation accuracy over a task's groups: true class x source (`labels["source"]`).

    Validation faces carry only their own task's label, so these groups cannot hold the other
    task's class (the test sets' groups do, see `mtl.evaluate`); groups without faces are ignored.
    """

    def __init__(self, classes: int, name: str, **kwargs):
        super().__init__(name=name, **kwargs)
        self.cells = classes * MAX_SOURCES
        self.right = self.add_variable(shape=(self.cells,), initializer="zeros", name="right")
        self.seen = self.add_variable(shape=(self.cells,), initializer="zeros", name="seen")

    def update_state(self, true_class, right, source, has_label):
        source = ops.zeros_like(true_class) if source is None else ops.clip(source, 0, MAX_SOURCES - 1)
        cell = true_class * MAX_SOURCES + source
        self.right.assign_add(tf.math.unsorted_segment_sum(right * has_label, cell, self.cells))
        self.seen.assign_add(tf.math.unsorted_segment_sum(has_label, cell, self.cells))

    def result(self):
        accuracies = ops.where(self.seen > 0, ops.divide_no_nan(self.right, self.seen), 2.0)
        worst = ops.min(accuracies)
        return ops.where(worst > 1.0, 0.0, worst)  # no face seen yet: 0, like an empty accuracy

    def reset_state(self):
        self.right.assign(ops.zeros_like(self.right))
        self.seen.assign(ops.zeros_like(self.seen))


def selection_metric(trainer: Trainer) -> str:
    """The validation metric that picks the best epoch: mean accuracy for two tasks, else the task's."""
    return "val_mean_accuracy" if len(trainer.answers) > 1 else f"val_{trainer.answers[0]}_accuracy"


def ema_momentum(steps_per_epoch: int) -> float:
    """The weight-averaging momentum whose average spans about one epoch (1 - 1/steps, at most 0.999)."""
    return min(0.999, 1 - 1 / max(2, steps_per_epoch))


def make_optimizer(config: TrainConfig, steps_per_epoch: int, steps: int) -> keras.optimizers.Optimizer:
    """The optimizer `config.optimizer` names (checked by the config), with its learning-rate schedule over `steps`.

    `steps_per_epoch` (one pass over the training batches) is the unit of warm-up and of the weight average.
    """
    learning_rate = config.learning_rate
    if config.schedule == "cosine":
        warmup_steps = int(config.warmup_epochs * steps_per_epoch)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup_steps else learning_rate,
            decay_steps=max(1, steps - warmup_steps),
            warmup_target=learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    # The average spans about one epoch. A fixed 0.999 kept 10% of the random initial weights after
    # 5 epochs of 448 steps, and the averaged model stayed at chance on the validation splits.
    average = {"use_ema": True, "ema_momentum": ema_momentum(steps_per_epoch)} if config.weight_averaging else {}
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay, **average)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True, **average)
    return keras.optimizers.Adam(learning_rate, **average)


def fit(
    trainer: Trainer,
    train_batches: tf.data.Dataset,
    validation_batches: tf.data.Dataset,
    config: TrainConfig,
    plan: Plan,
    log_dir: Path | None,
    extra_callbacks=(),
    initial_epoch: int = 0,
    verbose: int = 2,
    backup_dir: Path | None = None,
) -> dict:
    """Train as `plan` says, keep the weights of the best validation epoch, log to TensorBoard; returns a summary.

    An "epoch" here is one of the plan's evaluations: `plan.steps_per_evaluation` steps, then
    validation (under the epochs budget, one pass over the batches). From `initial_epoch` (a
    search trial continued by Hyperband) the optimizer starts afresh,
    so its schedule spans the epochs that are left. With `backup_dir` every epoch is
    checkpointed there, and a fit that finds a checkpoint continues after its last finished
    epoch, on the batches the interrupted fit would have seen next. A loss that stops being
    finite ends the fit with a UserError, the last finished epoch's checkpoint kept.
    """
    epochs, steps_per_epoch = plan.evaluations, plan.steps_per_evaluation
    trainer.compile(optimizer=make_optimizer(config, plan.steps_per_epoch, (epochs - initial_epoch) * steps_per_epoch))
    trainer.optimizer.build(trainer.trainable_variables)  # now, in the strategy's scope, not in a replica's step
    train_batches = distribute.sharded_by_example(train_batches)
    validation_batches = distribute.sharded_by_example(validation_batches)
    monitor = selection_metric(trainer)
    checkpoints = None
    earlier_seconds = 0.0  # what the interrupted fits this one continues spent up to their last checkpoint
    if backup_dir is not None:
        checkpoints = Checkpoints(backup_dir)
        finished = checkpoints.restore(trainer)
        if finished:
            print(f"Resuming after epoch {finished} from {backup_dir}.", flush=True)
            train_batches = train_batches.skip(finished * steps_per_epoch)
            initial_epoch = max(initial_epoch, finished)
            earlier_seconds = checkpoints.restored_seconds()
    best = BestWeights(monitor, checkpoints)
    # Order matters at each epoch's end: the random states and the raw weights go into the epoch's
    # checkpoint before the averaged weights are swapped in for the best-epoch choice, and the
    # checkpoint is made whole (renamed into place) only after the best-epoch state is in it too.
    callbacks = [StopOnNonFiniteLoss()]
    if checkpoints is not None:
        callbacks += [RandomStates(checkpoints), EpochCheckpoint(checkpoints)]
    if config.weight_averaging:
        # Validation and the best-epoch choice see the averaged weights (swapped at every evaluation).
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    callbacks += [best]
    start = time.perf_counter()
    if checkpoints is not None:
        # Each checkpoint keeps the seconds spent up to it, so a resumed fit counts the epochs it did not redo.
        def commit(epoch, logs):
            checkpoints.commit(epoch + 1, seconds=earlier_seconds + time.perf_counter() - start)

        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=commit))
    callbacks += list(extra_callbacks)
    if log_dir is not None:
        callbacks.insert(0, keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor, mode="max", patience=config.early_stopping_patience))
    try:
        trainer.fit(
            train_batches,
            validation_data=validation_batches,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles; Keras cannot shuffle a dataset
            verbose=verbose,
        )
    except Diverged as diverged:
        if checkpoints is not None:
            checkpoints.discard_pending()
        kept = f"; the last finished epoch is kept in {backup_dir}" if backup_dir is not None else ""
        raise UserError(f"Training of {trainer.network.name} diverged ({diverged}){kept}; try a lower train.learning_rate.") from None
    seconds = earlier_seconds + time.perf_counter() - start
    best.restore(trainer)
    return {
        "monitor": monitor,
        "best_epoch": best.best_epoch,
        "best_value": best.best_value if best.best_epoch else None,
        "best_validation": best.validation,
        "training_seconds": round(seconds, 1),  # across every interrupted fit it continues, to its last checkpoint
        "earlier_seconds": round(earlier_seconds, 1),  # of which before this process
        "history": best.history,
    }


def seconds_per_step(trainer: Trainer, batches: tf.data.Dataset, warmup: int = 3, timed: int = 10) -> float:
    """The seconds one training step of `trainer` takes here, timed over `timed` steps after `warmup` (tracing).

    The steps are thrown away: the weights (the weighting's and the robust method's state included)
    are put back, and the fit that follows builds its own optimizer and reads the batches afresh.
    """
    weights = trainer.get_weights()
    times = []
    timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: times.append(time.perf_counter()))
    trainer.compile(optimizer=keras.optimizers.Adam(0.0))
    trainer.fit(batches.take(warmup + timed), epochs=1, steps_per_epoch=warmup + timed, callbacks=[timer], verbose=0)
    trainer.set_weights(weights)
    return (times[-1] - times[warmup - 1]) / timed


class EpochCheckpoint(keras.callbacks.Callback):
    """Puts the weights and the optimizer's state, raw (before any averaged weights are swapped in), into each
    epoch's checkpoint; `fit` restores them before training, so a resumed fit continues after that epoch."""

    def __init__(self, checkpoints: Checkpoints):
        super().__init__()
        self.checkpoints = checkpoints

    def on_epoch_end(self, epoch, logs=None):
        save_weights(self.checkpoints, epoch + 1, self.model)


class RandomStates(keras.callbacks.Callback):
    """Checkpoints the layers' random-number states (dropout's) beside the weights, and restores them on resume.

    Keras's weights file holds the weights and the optimizer but not these, so without them a
    resumed fit would draw other dropout masks than the uninterrupted one.
    """

    def __init__(self, checkpoints: Checkpoints):
        super().__init__()
        self.checkpoints = checkpoints

    def states(self) -> list:
        return random_generator_states(self.model)

    def on_train_begin(self, logs=None):
        saved = load_arrays(self.checkpoints.restored, RANDOM_STATES)
        for state, value in zip(self.states(), saved or []):
            state.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        save_arrays(self.checkpoints, epoch + 1, RANDOM_STATES, [state.numpy() for state in self.states()])


class Diverged(Exception):
    """The training loss stopped being finite."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Ends the fit at once when the loss is NaN or infinite, before the epoch's checkpoint would keep it."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise Diverged(f"loss {float(loss)} at epoch {self.epoch + 1}, step {batch + 1}")


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best validation metric (higher is better) and every epoch's logs.

    With `checkpoints`, both go into each epoch's checkpoint too, so a resumed fit still knows what came before.
    """

    def __init__(self, monitor: str, checkpoints: Checkpoints | None = None):
        super().__init__()
        self.monitor = monitor
        self.checkpoints = checkpoints
        self.best_value = -math.inf
        self.best_epoch = None
        self.weights = None
        self.validation = {}  # the validation results of the best epoch
        self.history: dict[str, list[float]] = {}
        restored = checkpoints.restored if checkpoints is not None else None
        if restored is not None:
            # Read now: the folder is dropped once two newer checkpoints exist.
            state = json.loads((restored / BEST_STATE).read_text())
            self.best_value = state["best_value"] if state["best_value"] is not None else -math.inf
            self.best_epoch, self.validation, self.history = state["best_epoch"], state["validation"], state["history"]
            self.weights = load_arrays(restored, BEST_WEIGHTS)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        value = logs.get(self.monitor)
        improved = value is not None and value > self.best_value
        if improved:
            self.best_value, self.best_epoch = float(value), epoch + 1
            self.weights = self.model.get_weights()
            self.validation = {key: float(value) for key, value in logs.items() if key.startswith("val_")}
        if self.checkpoints is None:
            return
        if improved:
            save_arrays(self.checkpoints, epoch + 1, BEST_WEIGHTS, self.weights)
        else:
            keep_arrays(self.checkpoints, epoch + 1, BEST_WEIGHTS)
        state = {
            "best_value": self.best_value if self.best_epoch else None,
            "best_epoch": self.best_epoch,
            "validation": self.validation,
            "history": self.history,
        }
        save_json(self.checkpoints, epoch + 1, BEST_STATE, state)

    def restore(self, trainer):
        if self.weights is not None:
            trainer.set_weights(self.weights)
