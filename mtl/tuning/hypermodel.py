"""A search trial is a config trained exactly as `mtl train` trains it.

`ApproachHyperModel.build(hp)` makes the approach's stages with its own builders, and `fit`
fits them in order through `mtl.experiment.fit_stage`, the fit path of `mtl train`. Keras Tuner
sees one model per trial (`TrialModel`, holding every stage's trainer, so a checkpoint holds
every network) and, from the last stage, per-epoch logs that also carry the earlier stages'
best validation results, from which the two-task objective is computed.
"""

import contextlib
from pathlib import Path

import keras
import keras_tuner as kt
from keras import callbacks as keras_callbacks

from mtl.approaches.base import Approach, Stage
from mtl.compat import forget_custom_gradients
from mtl.config import ExperimentConfig
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.budget import Plan
from mtl.experiment import fit_stage, seed_everything
from mtl.tasks import TASKS
from mtl.tuning.space import config_for


class SearchStopped(kt.errors.FatalError):
    """A user's mistake met inside a trial: it stops the search rather than failing every trial."""


@contextlib.contextmanager
def user_errors_stop_the_search():
    try:
        yield
    except UserError as error:
        raise SearchStopped(str(error)) from error


class TrialModel(keras.Model):
    """Every stage's trainer of one trial, so that saving and loading weights covers all of them."""

    def __init__(self, stages: list[Stage], **kwargs):
        super().__init__(**kwargs)
        self.stages = stages
        self.trainers = [stage.trainer for stage in stages]
        self.built = True

    @property
    def optimizer(self):
        """The last stage's optimizer: Keras Tuner's callbacks act during that stage (TensorBoard logs its rate)."""
        return self.trainers[-1].optimizer


class TrialView(keras.callbacks.Callback):
    """Passes the last stage's events to Keras Tuner's callbacks as events of the whole trial.

    The callbacks act on the `TrialModel` (its checkpoint holds every network), and each epoch's
    logs gain the earlier stages' best validation results and the mean accuracy over both tasks.
    """

    def __init__(self, callbacks, trial_model: TrialModel, earlier: dict):
        super().__init__()
        self.callbacks = keras_callbacks.CallbackList(list(callbacks), model=trial_model)
        self.earlier = earlier

    def set_model(self, model):
        pass  # the tuner's callbacks stay on the trial model

    def on_train_begin(self, logs=None):
        self.callbacks.on_train_begin(logs)

    def on_train_end(self, logs=None):
        self.callbacks.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.callbacks.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = with_both_tasks({**self.earlier, **(logs or {})})
        self.callbacks.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.callbacks.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.callbacks.on_train_batch_end(batch, logs)


class ApproachHyperModel(kt.HyperModel):
    """Trials of one approach: `build` makes its stages, `fit` trains them as `mtl train` does."""

    def __init__(self, approach: Approach, base: ExperimentConfig, space: dict, data: ExperimentData, merged_dir: Path | None):
        super().__init__(name=f"{approach.name}_search")
        self.approach, self.base, self.space = approach, base, space
        self.data, self.merged_dir = data, merged_dir

    def trial_config(self, hp) -> ExperimentConfig:
        config = config_for(hp, self.approach, self.space, self.base)
        self.approach.check(config)
        return config

    def declare_hyperparameters(self, hp):
        # Registers the hyperparameters that only fit() reads, so the first trial samples them too.
        config_for(hp, self.approach, self.space, self.base)

    def build(self, hp):
        with user_errors_stop_the_search():
            config = self.trial_config(hp)
            seed_everything(config.train)
            return TrialModel(self.approach.stages(config))

    def fit(self, hp, model, validation_data=None, epochs=1, initial_epoch=0, callbacks=(), verbose=2, **kwargs):
        with user_errors_stop_the_search():
            config = self.trial_config(hp)
        earlier: dict = {}
        try:
            for index, stage in enumerate(model.stages):
                last = index == len(model.stages) - 1
                extra = [TrialView(callbacks, model, earlier)] if last else []
                batches, steps = self.approach.training_batches(config, stage.name, self.data, self.merged_dir)
                # Hyperband sizes trials in epochs, so a search trains under the epochs budget.
                summary = fit_stage(
                    config, stage, batches, self.data, Plan(stage.name, epochs, steps, steps), None, initial_epoch,
                    extra_callbacks=extra,
                )
                earlier.update(summary["best_validation"])
        finally:
            forget_custom_gradients()
        # A stage that never produced a finite result (a diverged run) counts as 0.
        return with_both_tasks({f"val_{task}_{kind}": 0.0 for task in TASKS for kind in TASK_METRICS} | earlier)


TASK_METRICS = ("accuracy", "worst_group_accuracy")


def with_both_tasks(logs: dict) -> dict:
    """`logs` with the two-task objectives of networks fitted one task at a time (separate's):
    the mean accuracy, and the worst group of either task."""
    for kind, combine in (("accuracy", lambda values: sum(values) / len(values)), ("worst_group_accuracy", min)):
        values = [logs[f"val_{task}_{kind}"] for task in TASKS if f"val_{task}_{kind}" in logs]
        if values:
            logs["val_mean_accuracy" if kind == "accuracy" else "val_worst_group_accuracy"] = combine(values)
    return logs
