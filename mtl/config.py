"""Experiment configuration: a tree of dataclasses, saved as JSON beside every run.

A config file need only name the fields it changes; everything else keeps its default.
Every field declares here, once, the type and the values it accepts; a config file, a
`--set` value, a merge and a search trial are all checked against that when they are read,
before any folder is made. Unknown fields are an error too, so a typo never silently falls
back to a default.
"""

import dataclasses
import importlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl.budget import KINDS as BUDGET_KINDS
from mtl.errors import UserError
from mtl.registry import did_you_mean


# Upper bounds of the settings with a physical size, far above any use and below what fails inside
# TensorFlow (a schedule of 1e23 epochs overflows its step counter; 100,000-pixel sides exhaust memory).
MAX_EPOCHS = 100_000
MAX_IMAGE_SIZE = 2048  # pixels a side: one such image is 50 MB of floats in the network
MAX_BATCH_SIZE = 65_536
MAX_BUDGET = 10**12  # faces, steps or seconds of one run: a million times any run here


def number(default, *, at_least=None, above=None, at_most=None, below=None):
    """A numeric field (or tuple of numbers) whose every number lies within the given bounds."""
    bounds = {"at_least": at_least, "above": above, "at_most": at_most, "below": below}
    bounds = {key: value for key, value in bounds.items() if value is not None}
    return field(default=default, metadata={"bounds": bounds})


def sources_of(*default: str):
    """A field holding a non-empty list of data sources ("PATH", "KIND:PATH", or a mapping of a kind's
    "type", "path" and options); a single one is read as a list of one."""
    return field(default=tuple(default), metadata={"sources": True})


def choice(default: str, *values: str, registry: str | None = None):
    """A field that takes one of `values`, or one of the names `registry` ("module:function") returns.

    Registries are resolved only when a config is checked: they import TensorFlow, and
    `mtl --help` must not.
    """
    return field(default=default, metadata={"choices": values, "registry": registry})


@dataclass(frozen=True)
class PluginOptions:
    """A plug-in's name and its own options, as a config writes them: `{"type": "dwa", "temperature": 2.0}`.

    A plug-in with options declares them as a subclass (its `Options`), fields made with `number`
    and `choice` like every other; one without options is this class. In a config a plug-in is
    either its name alone, which takes its defaults, or a mapping of `type` and the options it sets
    (Model Garden's OneOf configs). The plug-in itself is given only its own options.
    """

    type: str


def plugin(default: str, registry: str):
    """A field naming a plug-in of the registry `registry` ("module:REGISTRY") with the plug-in's own options.

    The registry is imported when a config is checked or made, never when this module is: it imports TensorFlow.
    """
    return field(default_factory=lambda: plugin_options(registry, default), metadata={"plugin": registry})


SOURCE_KINDS = "mtl.data.sources:KINDS"  # the registry of a data source's "type"
APPROACHES = "mtl.approaches:APPROACHES"


def _registry(name: str):
    module, attribute = name.split(":")
    return getattr(importlib.import_module(module), attribute)


def plugin_registry(dotted: str | None):
    """The registry of the plug-ins a field such as "options.loss_weighting.type" chooses among; None for
    any other field."""
    if not dotted or not dotted.endswith(".type"):
        return None
    registry = plugin_fields().get(dotted[: -len(".type")])
    return _registry(registry) if registry else None


def plugin_fields() -> dict[str, str]:
    """Every plug-in field of a config, dotted ("approach", "model.backbone", "options.robust"), with its registry
    ("module:REGISTRY")."""
    found = {item.name: item.metadata["plugin"] for item in dataclasses.fields(ExperimentConfig) if "plugin" in item.metadata}
    for section, kind in typing.get_type_hints(ExperimentConfig).items():
        if dataclasses.is_dataclass(kind):
            found.update({f"{section}.{item.name}": item.metadata["plugin"]
                          for item in dataclasses.fields(kind) if "plugin" in item.metadata})
    return found


def plugin_options(registry: str, name: str, values: dict | None = None, where: str = "") -> PluginOptions:
    """The options of the plug-in `name` of `registry`: its defaults updated by `values`, each checked."""
    entries = _registry(registry)
    if name not in entries:
        names = entries.names()
        raise UserError(f"Config field '{where}' must be one of: {', '.join(names)}, got {name!r}{did_you_mean(name, names)}")
    options = getattr(entries.get(name), "Options", PluginOptions)
    own = sorted(item.name for item in dataclasses.fields(options) if item.name != "type")
    unknown = sorted(set(values or {}) - set(own), key=str)
    if unknown:
        expected = f"has the options: {', '.join(own)}" if own else "has no options"
        raise UserError(f"Unknown config field '{where}.{unknown[0]}'; the {entries.what} '{name}' {expected}.")
    return _build(options, {**(values or {}), "type": name}, where)


class WithPlugins:
    """A config section with plug-in fields: made in Python, such a field may be given as a name or a
    mapping too (`ModelConfig(backbone="resnet")`), and becomes that plug-in's checked options."""

    SECTION = ""  # its key in an ExperimentConfig, for the sentences

    def __post_init__(self):
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if "plugin" in item.metadata and not isinstance(value, PluginOptions):
                where = f"{self.SECTION}.{item.name}" if self.SECTION else item.name
                object.__setattr__(self, item.name, _checked_plugin(item.metadata["plugin"], value, where))


@dataclass
class AugmentConfig:
    """Random changes applied to training images only."""

    flip: bool = True
    rotation: float = number(0.05, at_least=0, at_most=1)  # fraction of a full turn
    # Keras RandomZoom factors: positive zooms out, showing faces that fill less of the frame,
    # as in head-and-shoulders photos; negative zooms in.
    zoom: tuple[float, float] = number((-0.1, 0.5), above=-1, at_most=1)
    translation: float = number(0.1, at_least=0, at_most=1)
    contrast: float = number(0.2, at_least=0, at_most=1)
    brightness: float = number(0.2, at_least=0, at_most=1)
    # Colour faces turned grey at random, so colour cannot tell the datasets apart.
    grayscale_probability: float = number(0.5, at_least=0, at_most=1)
    # Share of faces shown at a lower resolution (down to 16 px, then back up), as small faces in
    # photographs reach the model.
    low_resolution: float = number(0.0, at_least=0, at_most=1)


@dataclass
class DataConfig:
    """Where the datasets are and how images are prepared."""

    data_dir: str | None = None  # None: the small sample bundled with the package
    # Each task's training and test data are lists of sources under data_dir, each "PATH" (a folder
    # of class folders, an .h5 or a .csv file) or "KIND:PATH" with a kind of `mtl.data.sources.KINDS`
    # (e.g. "utkface:utkface/train": class folders with age and ethnicity in the file names), or
    # for a kind with options {"type": KIND, "path": PATH, OPTION: value}. A single one is one source.
    gender_train: tuple[str, ...] = sources_of("gender/Training")
    # Every model is scored on every test source of its tasks: the first is the task's main test set.
    gender_test: tuple[str, ...] = sources_of("gender/Validation", "utkface:utkface/test")
    emotion_train: tuple[str, ...] = sources_of("fer2013/train")
    emotion_test: tuple[str, ...] = sources_of("fer2013/test")
    # How a task's training sources mix in a batch (Model Garden's proportional task sampler): each
    # source is drawn with weight size ** source_mixing, so 1 is in proportion to size, 0 equal shares.
    source_mixing: float = number(1.0, at_least=0, at_most=1)
    happy_house_test: str = "happy_house/test_happy.h5"
    joint_test: str | None = None  # a folder {happy_female,happy_male,sad_female,sad_male}/
    image_size: int = number(64, at_least=1, at_most=MAX_IMAGE_SIZE)  # each backbone declares its own minimum (mtl.models.backbones)
    color: str = choice("rgb", "rgb", "gray")  # "gray" turns every image grey inside the model
    validation_fraction: float = number(0.2, above=0, below=1)
    batch_size: int = number(32, at_least=1, at_most=MAX_BATCH_SIZE)
    cache: str = "memory"  # decoded images: "memory", "none" (decode every epoch) or a folder of cache files
    # A folder of TFDS datasets (`mtl prepare`): training and validation are read from its records,
    # prepared there first if absent; None: straight from the image folders.
    prepared: str | None = None
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    # Share of the emotion dataset in mixed batches (multitask); None: its natural share.
    emotion_proportion: float | None = number(0.5, above=0, below=1)


@dataclass
class ModelConfig(WithPlugins):
    SECTION = "model"
    # Its own options beside the name: {"type": "resnet", "width": 32, "depth": 1} (mtl.models.backbones).
    backbone: PluginOptions = plugin("lenet", registry="mtl.models.backbones:BACKBONES")
    dropout: float = number(0.5, at_least=0, below=1)
    # The saved model answers the mean of its answers for the face and its mirror image.
    flip_test_time_augmentation: bool = False


@dataclass
class BudgetConfig:
    """How long each stage trains (`mtl.budget`): the unit held equal when approaches are compared."""

    kind: str = choice("epochs", *BUDGET_KINDS)
    # The amount in each unit; null: what train.epochs epochs of the run's own stages cost
    # (mtl compare sets them from its baseline variant). Faces are those of the task's training sets.
    gender_faces: int | None = number(None, at_least=1, at_most=MAX_BUDGET)
    emotion_faces: int | None = number(None, at_least=1, at_most=MAX_BUDGET)
    steps: int | None = number(None, at_least=1, at_most=MAX_BUDGET)
    flops: float | None = number(None, above=0, at_most=1e21)  # training multiply-adds
    seconds: float | None = number(None, above=0, at_most=MAX_BUDGET)
    # Outside "epochs": how many evenly spaced points of its budget each stage is validated at.
    points: int = number(8, at_least=1, at_most=1000)


@dataclass
class TrainConfig:
    epochs: int = number(10, at_least=1, at_most=MAX_EPOCHS)
    learning_rate: float = number(1e-4, above=0, at_most=10)
    schedule: str = choice("constant", "constant", "cosine")
    # sgd: with Nesterov momentum 0.9, and usually a learning rate ten to a hundred times adam's.
    optimizer: str = choice("adam", "adam", "adamw", "sgd")
    weight_decay: float = number(1e-4, at_least=0, at_most=1)  # adamw only
    seed: int = number(42, at_least=0, at_most=2**32 - 1)  # what NumPy and TensorFlow accept
    early_stopping_patience: int | None = number(None, at_least=1, at_most=MAX_EPOCHS)  # epochs; None: never stop early
    # Epochs over which the learning rate rises from 0 (cosine schedule only).
    warmup_epochs: float = number(0.0, at_least=0, at_most=MAX_EPOCHS)
    label_smoothing: float = number(0.0, at_least=0, below=1)  # share of each target spread evenly over the classes
    # Validate and keep an exponential moving average of the weights (Keras's optimizer EMA).
    weight_averaging: bool = False
    # TensorFlow's deterministic ops: the same config gives the same weights, also across an
    # interruption and resume, at some cost in speed.
    deterministic: bool = False
    # Where training runs (mtl.distribute): one device, every local GPU or logical CPU ("mirrored"),
    # or the machines TF_CONFIG lists ("multiworker"); data.batch_size is then the global batch.
    strategy: str = choice("none", "none", "mirrored", "multiworker")
    # multiworker: how long a worker waits for the others to start before it gives up with exit status 2.
    worker_wait_seconds: float = number(600.0, above=0, at_most=7 * 24 * 3600)
    budget: BudgetConfig = field(default_factory=BudgetConfig)


@dataclass
class ApproachConfig(WithPlugins):
    """Options of the approaches; each approach reads the ones that concern it."""

    SECTION = "options"

    # A separate-approach run whose models cross-label; None: train them inside this run.
    teachers: str | None = None
    # Each of the three below is a plug-in: its name, or {"type": name, its options...}.
    # Where a missing task's labels come from (mtl.labels): "none" (masked), "hard", "soft",
    # {"type": "threshold", "confidence": 0.9}.
    pseudo_labels: PluginOptions = plugin("hard", registry="mtl.labels:LABEL_SOURCES")
    # How the losses of the heads combine (mtl.weighting): {"type": "fixed", "gender_weight": 1.0,
    # "emotion_weight": 1.0}, {"type": "dwa", "temperature": 2.0}, {"type": "gradnorm", "alpha": 1.5}, ...
    loss_weighting: PluginOptions = plugin("fixed", registry="mtl.weighting:WEIGHTINGS")
    # How a head's per-example losses become its loss (mtl.robust): "none" (the weighted mean),
    # "balanced" or {"type": "group_dro", "step_size": 0.01} over groups of class x other task's
    # class x source (mtl.groups).
    robust: PluginOptions = plugin("none", registry="mtl.robust:METHODS")


@dataclass
class ExperimentConfig(WithPlugins):
    # A plug-in like the others (mtl.approaches): its name, or {"type": name, its options...}
    # ({"type": "crosslabel", "four_class_epochs": 20}).
    approach: PluginOptions = plugin("separate", registry=APPROACHES)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    options: ApproachConfig = field(default_factory=ApproachConfig)

    def to_dict(self) -> dict[str, Any]:
        """The config as its JSON holds it: every field, the approach as its name alone where its options are
        its defaults, as every config and run wrote it before approaches had options."""
        values = dataclasses.asdict(self)
        if self.approach == plugin_options(APPROACHES, self.approach.type):
            values["approach"] = self.approach.type
        return values


# ---------------------------------------------------------------------- checking ---


def _kind(annotation) -> tuple[Any, bool]:
    """(the type a field holds, whether it may also be None) from its annotation."""
    if isinstance(annotation, types.UnionType):
        kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
        return kinds[0], len(kinds) < len(typing.get_args(annotation))
    return annotation, False


def _choices(rules) -> tuple[str, ...] | None:
    if rules.get("registry"):
        module, function = rules["registry"].split(":")
        return tuple(getattr(importlib.import_module(module), function)())
    return rules.get("choices") or None


def _within(value, bounds) -> bool:
    return (
        value >= bounds.get("at_least", -math.inf)
        and value > bounds.get("above", -math.inf)
        and value <= bounds.get("at_most", math.inf)
        and value < bounds.get("below", math.inf)
    )


_REFUSED = object()


def _converted(value, kind, rules):
    """`value` as a `kind` (an int is a float too, a list a tuple) if it keeps `rules`, else _REFUSED."""
    if typing.get_origin(kind) is tuple:
        item_kinds = typing.get_args(kind)
        if not isinstance(value, (list, tuple)) or len(value) != len(item_kinds):
            return _REFUSED
        items = tuple(_converted(item, item_kind, rules) for item, item_kind in zip(value, item_kinds))
        return _REFUSED if any(item is _REFUSED for item in items) else items
    if isinstance(value, bool) != (kind is bool):  # JSON's true is no number, 1 no flag
        return _REFUSED
    if kind is float and isinstance(value, int):
        value = float(value)
    if not isinstance(value, kind) or (kind is float and not math.isfinite(value)):
        return _REFUSED
    if "bounds" in rules and not _within(value, rules["bounds"]):
        return _REFUSED
    choices = _choices(rules)
    if choices is not None and value not in choices:
        return _REFUSED
    return value


_SIGNS = {"at_least": ">=", "above": ">", "at_most": "<=", "below": "<"}


def _bounds_text(bounds) -> str:
    """' >= 1', ' > 0', or an interval such as ' in [0, 1)'."""
    low = [(key, value) for key, value in bounds.items() if key in ("at_least", "above")]
    high = [(key, value) for key, value in bounds.items() if key in ("at_most", "below")]
    if low and high:
        (low_key, low_value), (high_key, high_value) = low[0], high[0]
        opening = "[" if low_key == "at_least" else "("
        closing = "]" if high_key == "at_most" else ")"
        return f" in {opening}{low_value:g}, {high_value:g}{closing}"
    return "".join(f" {_SIGNS[key]} {value:g}" for key, value in bounds.items())


def _allowed(kind, rules, optional: bool) -> str:
    """What a field accepts, in words: 'a whole number >= 1', 'one of: rgb, gray', ..."""
    choices = _choices(rules)
    if rules.get("sources"):
        text = 'a source ("PATH", "KIND:PATH" or {"type": KIND, "path": PATH, options}) or a non-empty list of them'
    elif choices is not None:
        text = f"one of: {', '.join(choices)}"
    elif kind is bool:
        text = "true or false"
    elif kind is str:
        text = "a string"
    elif typing.get_origin(kind) is tuple:
        text = f"a list of {len(typing.get_args(kind))} numbers"
    else:
        text = "a whole number" if kind is int else "a number"
    text += _bounds_text(rules.get("bounds", {}))
    return f"{text} or null" if optional else text


def _checked(cls, name: str, value, where: str):
    """The value of field `name` of `cls`, converted to its declared type, or a UserError naming it."""
    kind, optional = _kind(typing.get_type_hints(cls)[name])
    if value is None and optional:
        return None
    rules = next(item.metadata for item in dataclasses.fields(cls) if item.name == name)
    if "plugin" in rules:
        return _checked_plugin(rules["plugin"], value, where)
    if rules.get("sources"):
        return _checked_sources(value, where, _allowed(kind, rules, optional))
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            allowed = "a mapping of its fields" + (" or null" if optional else "")
            raise UserError(f"Config section '{where}' must be {allowed}, got {value!r}.")
        default = getattr(cls(), name)
        start = dataclasses.asdict(default) if default is not None else {}
        return _build(kind, {**start, **value}, where)
    converted = _converted(value, kind, rules)
    if converted is _REFUSED:
        raise UserError(f"Config field '{where}' must be {_allowed(kind, rules, optional)}, got {value!r}.")
    return converted


def _checked_sources(value, where: str, allowed: str) -> tuple:
    """A sources field's value as a tuple of specs: strings as they are, a mapping with its kind's options checked
    and their defaults filled in."""
    items = (value,) if isinstance(value, (str, dict)) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise UserError(f"Config field '{where}' must be {allowed}, got {value!r}.")
    specs = []
    for index, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("type"), str) and isinstance(item.get("path"), str) and item["path"]:
            # The kind and its options are a plug-in field's value; the path rides beside them.
            kind = _checked_plugin(SOURCE_KINDS, {key: setting for key, setting in item.items() if key != "path"},
                                   f"{where}[{index}]")
            options = dataclasses.asdict(kind)
            specs.append({"type": options.pop("type"), "path": item["path"], **options})
        elif isinstance(item, str) and item:
            specs.append(item)
        else:
            raise UserError(f"Config field '{where}' must be {allowed}, got {value!r}.")
    return tuple(specs)



def _checked_plugin(registry: str, value, where: str) -> PluginOptions:
    """A plug-in field's value, a name or a mapping with "type", as that plug-in's checked options."""
    if isinstance(value, PluginOptions):
        value = dataclasses.asdict(value)
    if isinstance(value, str):
        return plugin_options(registry, value, where=where)
    if isinstance(value, dict) and isinstance(value.get("type"), str):
        return plugin_options(registry, value["type"], {key: item for key, item in value.items() if key != "type"}, where)
    raise UserError(
        f"Config field '{where}' must be a plug-in's name or a mapping with its \"type\" and options, got {value!r}."
    )


def _build(cls, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise UserError(f"A config must be a mapping of field names to values, got {values!r}.")
    known = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known, key=str)
    prefix = f"{where}." if where else ""
    if unknown:
        raise UserError(f"Unknown config field '{prefix}{unknown[0]}'; expected one of: {', '.join(sorted(known))}.")
    return cls(**{name: _checked(cls, name, value, prefix + name) for name, value in values.items()})


def config_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    """An ExperimentConfig from a (possibly partial) nested dict, every value checked.

    An unknown key, a value of the wrong type or outside what its field allows is a UserError.
    A config written before the plug-ins carried their options is read as its new form.
    """
    return _build(ExperimentConfig, migrated(values), "")


# Fields that plug-in options replaced (December 2026): (section, old field) -> (plug-in field, dotted,
# the plug-ins that read it, its name among their options). Every saved run and committed result
# of before holds them, so they are still read; `migrated` moves each into its plug-in.
OLD_PLUGIN_FIELDS = {
    ("model", "width"): ("model.backbone", ("resnet", "dsresnet"), "width"),
    ("model", "depth"): ("model.backbone", ("resnet", "dsresnet"), "depth"),
    ("options", "confidence_threshold"): ("options.pseudo_labels", ("threshold",), "confidence"),
    ("options", "gender_loss_weight"): ("options.loss_weighting", ("fixed",), "gender_weight"),
    ("options", "emotion_loss_weight"): ("options.loss_weighting", ("fixed",), "emotion_weight"),
    ("options", "dwa_temperature"): ("options.loss_weighting", ("dwa",), "temperature"),
    ("options", "gradnorm_alpha"): ("options.loss_weighting", ("gradnorm",), "alpha"),
    ("options", "group_dro_step_size"): ("options.robust", ("group_dro",), "step_size"),
    ("train", "four_class_epochs"): ("approach", ("crosslabel",), "four_class_epochs"),
}
# The plug-in each field named by default then, for an old field set beside no plug-in name.
_OLD_DEFAULTS = {"model.backbone": "lenet", "options.pseudo_labels": "hard", "options.loss_weighting": "fixed",
                 "options.robust": "none", "approach": "separate"}


def _holder(values: dict, plugin_field: str) -> tuple[dict | None, str]:
    """(the mapping that holds a plug-in field in `values`, the field's key there)."""
    *section, key = plugin_field.split(".")
    holder = values.get(section[0]) if section else values
    return (holder if isinstance(holder, dict) else None), key


def migrated(values, within: dict | None = None):
    """`values` with every old plug-in field (`model.width`, `options.dwa_temperature`, ...) moved
    into the options of the plug-in it served; dropped where the config names another plug-in,
    which never read it, and where it is null, which said "the default" (`train.four_class_epochs`).
    Anything else is returned as it is, for `_build` to check.

    `within`: the config that `values`, a partial override (a comparison's variant), is merged into;
    where `values` names no plug-in, that config's is the one the old field served.
    """
    if not isinstance(values, dict) or not any(
        isinstance(values.get(section), dict) and old in values[section] for section, old in OLD_PLUGIN_FIELDS
    ):
        return values
    values = {key: dict(value) if isinstance(value, dict) else value for key, value in values.items()}
    for (section, old), (plugin_field, readers, option) in OLD_PLUGIN_FIELDS.items():
        bag = values.get(section)
        if not isinstance(bag, dict) or old not in bag:
            continue
        setting = bag.pop(old)
        holder, key = _holder(values, plugin_field)
        around, _ = _holder(within or {}, plugin_field)
        inherited = around.get(key) if around is not None else None
        chosen = (holder or {}).get(key, inherited or _OLD_DEFAULTS[plugin_field])
        chosen = {"type": chosen} if isinstance(chosen, str) else dict(chosen) if isinstance(chosen, dict) else chosen
        if setting is not None and holder is not None and isinstance(chosen, dict) and chosen.get("type") in readers:
            chosen[option] = setting  # over a default the dict may hold: a merge of an old override into a new config
            holder[key] = chosen
    return values


# ------------------------------------------------------------------ files and merges ---


def read_json(path: str | Path, what: str = "Config file") -> Any:
    """The parsed JSON of a file the user named, or a UserError saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} '{path}' does not exist.")
    def refuse_duplicates(pairs):
        # json would keep the last of two equal keys: the first setting would be silently ignored.
        keys = [key for key, _ in pairs]
        duplicate = next((key for key in keys if keys.count(key) > 1), None)
        if duplicate is not None:
            raise UserError(f"{what} '{path}' sets '{duplicate}' twice in one object; keep one of them.")
        return dict(pairs)

    try:
        return json.loads(path.read_text(), object_pairs_hook=refuse_duplicates)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{what} '{path}' is not valid JSON ({error}).") from None


def load_config(path: str | Path) -> ExperimentConfig:
    return config_from_dict(read_json(path))


def merge(config: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """A copy of config with the nested overrides applied (same rules as a config file)."""
    return config_from_dict(deep_merge(dataclasses.asdict(config), overrides))


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """base updated by overrides, merging nested dicts instead of replacing them."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, str) and isinstance(merged.get(key), dict) and merged[key].get("type") == value:
            continue  # a plug-in named again keeps its options, as {"type": name} does: `mtl train crosslabel --config`
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and _same_plugin(merged[key], value):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _same_plugin(base: dict, override: dict) -> bool:
    """False where `override` names another plug-in than `base`: it then starts from that plug-in's
    defaults instead of inheriting options the other plug-in had."""
    return override.get("type", base.get("type")) == base.get("type")


def set_dotted(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    """Set 'train.epochs'-style keys into a nested overrides dict."""
    *parents, leaf = dotted.split(".")
    node = overrides
    for part in parents:
        if isinstance(node.get(part), str):
            node[part] = {"type": node[part]}  # `--set model.backbone=resnet --set model.backbone.width=48`
        elif not isinstance(node.get(part), dict):
            node[part] = {}  # a later `--set train.epochs=3` after `--set train=5` wins, as any later one does
        node = node[part]
    node[leaf] = value
