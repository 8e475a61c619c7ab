"""What an approach declares about itself, and the registry of approaches by name.

An approach says which networks it fits, in order (its stages), on which batches (and what
share of them each task's faces are), with which
loss weighting and group-robust method; whether it needs the teachers' pseudo-labels; which hyperparameters it adds to a
search; which option combinations it refuses; which fields it adds to HParams rows; and its own
options (`Options`, a config's `{"type": NAME, OPTION: value}`, read as `config.approach.OPTION`).
The runner (`mtl.experiment`) fits the stages; `mtl train`, `mtl compare` and `mtl tune` run
every approach through this interface and never branch on an approach's name, so a new
approach is one module with one registered class.
"""

from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from mtl import groups, robust, training
from mtl.config import ExperimentConfig, PluginOptions, merge
from mtl.data.pipeline import ExperimentData
from mtl.registry import Registry
from mtl.searchable import Hyperparameter
from mtl.tasks import GENDER, TASKS


@dataclass
class Stage:
    """One network an approach fits: `mtl train` and a search trial fit the stages in order."""

    name: str  # names its logs (logs/<name>) and training summary (<name>_training.json)
    network: keras.Model
    weighting: keras.layers.Layer | None = None  # None: the plain sum of the head losses
    robust: keras.layers.Layer | None = None  # None: each head's weighted mean loss (options.robust "none")
    trainer: training.Trainer = field(init=False, repr=False)

    def __post_init__(self):
        self.trainer = training.Trainer(self.network, self.weighting, self.robust)


class Approach:
    """Base of every approach; a subclass overrides what differs and is registered with `@register`."""

    name: str = ""
    # Its own options (a `PluginOptions` subclass), read as `config.approach.OPTION`; this one has none.
    Options = PluginOptions
    # Its options a search varies, each with the values it tries by default (mtl.tuning.space).
    search_defaults: dict = {}
    # Its trained runs can cross-label for other approaches (the separate models).
    provides_teachers: bool = False
    # Hyperparameters this approach adds to the shared search space (mtl.tuning.space).
    hyperparameters: dict[str, Hyperparameter] = {}
    default_objective: str = "val_mean_accuracy"

    def check(self, config: ExperimentConfig) -> None:
        """Refuse, with a UserError, option combinations this approach cannot train."""

    def needs_teachers(self, config: ExperimentConfig) -> bool:
        """Whether training needs the teachers' cross-labelled images."""
        return False

    def hparams(self, config: ExperimentConfig) -> dict:
        """The options this approach adds to its HParams row ("n/a" for a field another approach adds)."""
        return {}

    def stages(self, config: ExperimentConfig) -> list[Stage]:
        """The freshly built networks to fit, in training order."""
        raise NotImplementedError

    def training_batches(
        self, config: ExperimentConfig, stage: str, data: ExperimentData, merged_dir: Path | None
    ) -> tuple[tf.data.Dataset, int]:
        """A stage's endless training batches `(images, targets, weights)` and the steps of one epoch."""
        raise NotImplementedError

    def task_shares(self, config: ExperimentConfig, stage: str, data: ExperimentData) -> dict[str, float]:
        """Per task, the share of a stage's batch drawn from that task's training sets (the budget's faces seen).

        Empty when an approach does not say: it then trains under the epochs budget only.
        """
        return {}

    def epochs(self, config: ExperimentConfig, stage: str) -> int:
        return config.train.epochs

    def with_stage_epochs(self, config: ExperimentConfig, epochs: int) -> ExperimentConfig:
        """`config` with its stages trained `epochs` epochs (what a search trial trained), teachers unchanged."""
        return merge(config, {"train": {"epochs": epochs}})


def sources_per_task(config: ExperimentConfig) -> dict[str, int]:
    """How many data sources each task trains on (`labels["source"]` indexes them), which sizes the groups.

    Read from the config, because stages are built before the data is loaded.
    """
    return {task: len(config.data.gender_train if task == GENDER else config.data.emotion_train) for task in TASKS}


def uses_groups(config: ExperimentConfig) -> bool:
    """Whether the group-robust method `options.robust` names reads groups, so training needs the teachers."""
    return robust.METHODS.get(config.options.robust.type).needs_groups


def robust_method(config: ExperimentConfig, heads) -> robust.RobustMethod:
    """The group-robust method `options.robust` names, for heads of the tasks in `heads`."""
    sources = sources_per_task(config)
    return robust.create(config.options, heads, {head: groups.num_groups(head, sources) for head in heads})


def group_function(config: ExperimentConfig, heads):
    """`(labels, predictions) -> {head: group ids}` for group-robust training, or None for a method without groups."""
    if not uses_groups(config):
        return None
    sources = sources_per_task(config)

    def head_groups(labels, predictions):
        ids = groups.group_ids(labels, predictions, sources)
        return {head: ids[head] for head in heads}

    return head_groups


APPROACHES: Registry[Approach] = Registry("approach")


def register(cls: type[Approach]) -> type[Approach]:
    """Class decorator: make an approach selectable by its `name` in configs, `compare` and `tune`."""
    APPROACHES.add(cls.name, cls())
    return cls


def get(name: str) -> Approach:
    return APPROACHES.get(name)


def names() -> list[str]:
    return APPROACHES.names()


def teacher() -> Approach:
    """The approach whose runs cross-label for the others."""
    return next(approach for _, approach in APPROACHES.items() if approach.provides_teachers)
