"""Experiment configuration: a tree of dataclasses, saved as JSON beside every run.

A config file need only name the fields it changes; everything else keeps its default.
Unknown fields are an error, so a typo never silently falls back to a default.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl.errors import UserError


@dataclass
class AugmentConfig:
    """Random changes applied to training images only."""

    flip: bool = True
    rotation: float = 0.05  # fraction of a full turn
    # Keras RandomZoom factors: positive zooms out, showing faces that fill less of the frame,
    # as in head-and-shoulders photos; negative zooms in.
    zoom: tuple[float, float] = (-0.1, 0.5)
    translation: float = 0.1
    contrast: float = 0.2
    brightness: float = 0.2
    # Colour faces turned grey at random, so colour cannot tell the datasets apart.
    grayscale_probability: float = 0.5


@dataclass
class DataConfig:
    """Where the datasets are and how images are prepared."""

    data_dir: str | None = None  # None: the small sample bundled with the package
    gender_train: str = "gender/Training"
    gender_test: str = "gender/Validation"
    emotion_train: str = "fer2013/train"
    emotion_test: str = "fer2013/test"
    happy_house_test: str = "happy_house/test_happy.h5"
    joint_test: str | None = None  # a folder {happy_female,happy_male,sad_female,sad_male}/
    image_size: int = 64
    color: str = "rgb"  # "rgb" keeps colour, "gray" turns every image grey inside the model
    validation_fraction: float = 0.2
    batch_size: int = 32
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    # Share of the emotion dataset in mixed batches (multitask); None: its natural share.
    emotion_proportion: float | None = 0.5


@dataclass
class ModelConfig:
    backbone: str = "lenet"
    width: int = 32  # channels of the first stage (resnet, dsresnet; LeNet is fixed)
    depth: int = 1  # residual blocks per stage (resnet, dsresnet)
    dropout: float = 0.5


@dataclass
class TrainConfig:
    epochs: int = 10
    four_class_epochs: int | None = None  # crosslabel's four-class model; None: same as epochs
    learning_rate: float = 1e-4
    schedule: str = "constant"  # "constant" or "cosine"
    optimizer: str = "adam"
    seed: int = 42
    early_stopping_patience: int | None = None


@dataclass
class ApproachConfig:
    """Options of the approaches; each approach reads the ones that concern it."""

    # A separate-approach run whose models cross-label; None: train them inside this run.
    teachers: str | None = None
    # Where a missing task's labels come from: "none" (masked), "hard", "soft", "threshold".
    pseudo_labels: str = "hard"
    confidence_threshold: float = 0.9
    # How the two losses combine: "fixed" or "uncertainty".
    loss_weighting: str = "fixed"
    gender_loss_weight: float = 1.0
    emotion_loss_weight: float = 1.0


@dataclass
class ExperimentConfig:
    approach: str = "separate"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    options: ApproachConfig = field(default_factory=ApproachConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _build(cls, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise UserError(f"Config section '{where}' must be a mapping, got {type(values).__name__}.")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(
            f"Unknown config field '{where}.{unknown[0]}'; expected one of: {', '.join(sorted(known))}."
        )
    defaults = cls()
    kwargs = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        nested = _nested_type(cls, name)
        if nested is not None and value is not None:
            start = dataclasses.asdict(default) if default is not None else {}
            kwargs[name] = _build(nested, {**start, **value}, f"{where}.{name}")
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


_NESTED = {
    (ExperimentConfig, "data"): DataConfig,
    (ExperimentConfig, "model"): ModelConfig,
    (ExperimentConfig, "train"): TrainConfig,
    (ExperimentConfig, "options"): ApproachConfig,
    (DataConfig, "augment"): AugmentConfig,
}


def _nested_type(cls, name):
    return _NESTED.get((cls, name))


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """An ExperimentConfig from a (possibly partial) nested dict; unknown keys are a UserError."""
    return _build(ExperimentConfig, values, "config")


def read_json(path: str | Path, what: str = "Config file") -> Any:
    """The parsed JSON of a file the user named, or a UserError saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} '{path}' does not exist.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{what} '{path}' is not valid JSON ({error}).") from None


def load_config(path: str | Path) -> ExperimentConfig:
    return config_from_dict(read_json(path))


def merge(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """A copy of config with the nested overrides applied (same rules as a config file)."""
    return config_from_dict(deep_merge(config.to_dict(), overrides))


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """base updated by overrides, merging nested dicts instead of replacing them."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def set_dotted(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    """Set 'train.epochs'-style keys into a nested overrides dict."""
    *parents, leaf = dotted.split(".")
    node = overrides
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
