"""Training any network on (image, targets, weights) batches, validated on true labels.

Training batches carry, per head, target probabilities and a weight per example (0 where the
example has no label for that head). Validation batches carry the true labels
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

from mtl.config import ApproachConfig, TrainConfig
from mtl.losses import masked_cross_entropy
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER, TASKS
from mtl.weighting import Weighting, split_variables


def task_probabilities(outputs: dict) -> dict:
    """Gender and emotion probabilities from a network's heads (summing a four-class head)."""
    answers = {task: outputs[task] for task in TASKS if task in outputs}
    if FOUR in outputs:
        grid = ops.reshape(outputs[FOUR], (-1, len(CLASSES[EMOTION]), len(CLASSES[GENDER])))
        answers.setdefault(GENDER, ops.sum(grid, axis=1))
        answers.setdefault(EMOTION, ops.sum(grid, axis=2))
    return answers


class Trainer(keras.Model):
    """Wraps a network for `fit`: masked, weighted losses in training; true-label accuracy in validation."""

    def __init__(self, network: keras.Model, weighting: Weighting | None = None, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.heads = list(network.output.keys())
        self.weighting = weighting or Weighting(ApproachConfig(), self.heads)
        self.answers = [task for task in TASKS if task in self.heads or FOUR in self.heads]
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.head_losses = {head: keras.metrics.Mean(name=f"{head}_loss") for head in self.heads}
        # One accuracy per name, scored against a head's targets in training and a task's true
        # labels in validation: two metrics under one name made Keras log the idle one, 0.
        names = dict.fromkeys(self.heads + self.answers)  # a four-class head adds gender and emotion
        self.accuracy = {name: keras.metrics.CategoricalAccuracy(name=f"{name}_accuracy") for name in names}
        self.build(network.input.shape)

    def build(self, input_shape):
        # The network is built already; marking the wrapper built lets Keras save and reload its
        # weights before any training (Keras Tuner checkpoints and reloads every trial that way).
        self.built = True

    def call(self, images, training=False):
        return self.network(images, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, *self.head_losses.values(), *self.accuracy.values()]

    def fit(self, *args, callbacks=None, **kwargs):
        # Weightings that follow the losses over epochs (DWA) hear of each epoch's end from here.
        epoch_end = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.weighting.end_epoch())
        return super().fit(*args, callbacks=[*(callbacks or ()), epoch_end], **kwargs)

    def train_step(self, data):
        images, targets, weights = data
        with tf.GradientTape(persistent=self.weighting.needs_gradients) as tape:
            outputs = self.network(images, training=True)
            losses = {head: masked_cross_entropy(targets[head], outputs[head], weights[head]) for head in self.heads}
            present = {head: ops.cast(ops.sum(weights[head]) > 0, "float32") for head in self.heads}
            loss = self.weighting.total_loss(losses, present)
        if self.weighting.needs_gradients:
            variables, gradients = self.combined_task_gradients(tape, losses, present, loss)
        else:
            variables = self.trainable_variables
            gradients = tape.gradient(loss, variables)
        self.optimizer.apply(gradients, variables)
        self.loss_tracker.update_state(loss)
        for head in self.heads:
            self.head_losses[head].update_state(losses[head], sample_weight=present[head])
            self.accuracy[head].update_state(targets[head], outputs[head], sample_weight=weights[head])
        logged = [self.loss_tracker, *self.head_losses.values(), *(self.accuracy[head] for head in self.heads)]
        return {metric.name: metric.result() for metric in logged}

    def combined_task_gradients(self, tape, losses: dict, present: dict, loss) -> tuple[list, list]:
        """(variables, gradients): the weighting combines the heads' gradients of the shared variables;
        each head's layer gets its own loss's gradient, the weighting's own variables the total's."""
        shared, own = split_variables(self.network, self.heads)
        task_gradients, variables, gradients = {}, [], []
        for head in self.heads:
            # One backward pass per head, through the backbone and the head's own layer.
            head_gradients = tape.gradient(
                losses[head], shared + own[head], unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            task_gradients[head] = head_gradients[: len(shared)]
            variables += own[head]
            gradients += head_gradients[len(shared) :]
        variables += shared + self.weighting.trainable_variables
        gradients += self.weighting.combine_gradients(losses, present, task_gradients)
        gradients += tape.gradient(loss, self.weighting.trainable_variables)
        return variables, gradients

    def test_step(self, data):
        images, labels = data
        answers = task_probabilities(self.network(images, training=False))
        total = 0.0
        for task in self.answers:
            has_label = ops.cast(labels[task] >= 0, "float32")
            truth = ops.one_hot(ops.maximum(labels[task], 0), len(CLASSES[task]))
            total += masked_cross_entropy(truth, answers[task], has_label)
            self.accuracy[task].update_state(truth, answers[task], sample_weight=has_label)
        self.loss_tracker.update_state(total)
        logs = {metric.name: metric.result() for metric in [self.loss_tracker, *(self.accuracy[t] for t in self.answers)]}
        if len(self.answers) > 1:
            # A real logged metric, so Keras Tuner and early stopping can select on both tasks at once.
            logs["mean_accuracy"] = ops.mean(ops.stack([logs[f"{t}_accuracy"] for t in self.answers]))
        return logs


def selection_metric(trainer: Trainer) -> str:
    """The validation metric that picks the best epoch: mean accuracy for two tasks, else the task's."""
    return "val_mean_accuracy" if len(trainer.answers) > 1 else f"val_{trainer.answers[0]}_accuracy"


def make_optimizer(config: TrainConfig, steps_per_epoch: int, epochs: int) -> keras.optimizers.Optimizer:
    """The optimizer `config.optimizer` names (checked by the config), with its learning-rate schedule."""
    learning_rate = config.learning_rate
    if config.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps_per_epoch * epochs))
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(learning_rate)


def fit(
    trainer: Trainer,
    train_batches: tf.data.Dataset,
    validation_batches: tf.data.Dataset,
    config: TrainConfig,
    epochs: int,
    steps_per_epoch: int,
    log_dir: Path | None,
    extra_callbacks=(),
    initial_epoch: int = 0,
    verbose: int = 2,
) -> dict:
    """Train, keep the weights of the best validation epoch, log to TensorBoard; returns a summary.

    From `initial_epoch` (a search trial continued by Hyperband) the optimizer starts afresh,
    so its schedule spans the epochs that are left.
    """
    trainer.compile(optimizer=make_optimizer(config, steps_per_epoch, epochs - initial_epoch))
    monitor = selection_metric(trainer)
    best = BestWeights(monitor)
    callbacks = [best, *extra_callbacks]
    if log_dir is not None:
        callbacks.insert(0, keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    if config.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor, mode="max", patience=config.early_stopping_patience))
    start = time.perf_counter()
    history = trainer.fit(
        train_batches,
        validation_data=validation_batches,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles; Keras cannot shuffle a dataset
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    best.restore(trainer)
    return {
        "monitor": monitor,
        "best_epoch": best.best_epoch,
        "best_value": best.best_value if best.best_epoch else None,
        "best_validation": best.validation,
        "training_seconds": round(seconds, 1),
        "history": {key: [float(v) for v in values] for key, values in history.history.items()},
    }


class BestWeights(keras.callbacks.Callback):
    """Remembers the weights of the epoch with the best validation metric (higher is better)."""

    def __init__(self, monitor: str):
        super().__init__()
        self.monitor = monitor
        self.best_value = -math.inf
        self.best_epoch = None
        self.weights = None
        self.validation = {}  # the validation results of the best epoch

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best_value:
            self.best_value, self.best_epoch = float(value), epoch + 1
            self.weights = self.model.get_weights()
            self.validation = {key: float(value) for key, value in logs.items() if key.startswith("val_")}

    def restore(self, trainer):
        if self.weights is not None:
            trainer.set_weights(self.weights)


def write_json(path: Path, values) -> None:
    Path(path).write_text(json.dumps(values, indent=2) + "\n")
