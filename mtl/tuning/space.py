"""Search spaces: which hyperparameters a search may vary, and how a trial's values become a config.

A hyperparameter is declared once (`mtl.searchable.Hyperparameter`), with the config field it sets
and the values it may take (its spec). The shared ones are below; each approach adds its own
(`Approach.hyperparameters`); every option of a registered plug-in is one too (`searchable_options`),
searched by default with the values the plug-ins a search chooses declare (`search_defaults`).
A spec is a list (a choice), `{"min", "max"[, "step", "sampling"]}` (a range; integers if every
bound is) or anything else (a fixed value). Search files and `--hp` replace specs, never fields.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

import keras_tuner as kt

from mtl.config import AugmentConfig, ExperimentConfig, PluginOptions, deep_merge, merge, plugin_fields, plugin_registry
from mtl.errors import UserError
from mtl.models import backbones
from mtl.searchable import Hyperparameter


# Hyperparameters that took the names of the options they set (the threshold label source's
# confidence, the fixed weighting's emotion weight): an old name is told its new one.
RENAMED = {"confidence_threshold": "confidence", "emotion_loss_weight": "emotion_weight"}


def renamed(names) -> str:
    """'confidence_threshold is now confidence' for each old name among `names`, joined."""
    return ", ".join(f"{old} is now {RENAMED[old]}" for old in sorted(set(names) & set(RENAMED)))


def scaled_augmentation(base: AugmentConfig | None, strength: float) -> dict:
    """The base augmentation (the defaults if it has none) with every geometric and photometric change scaled.

    Strength 0 keeps only the colour-to-grey change, which is about the datasets, not strength.
    """
    reference = base or AugmentConfig()
    return {
        "flip": bool(reference.flip and strength > 0),
        "rotation": round(reference.rotation * strength, 6),
        "zoom": [round(value * strength, 6) for value in reference.zoom],
        "translation": round(reference.translation * strength, 6),
        "contrast": round(reference.contrast * strength, 6),
        "brightness": round(reference.brightness * strength, 6),
        "grayscale_probability": reference.grayscale_probability,
        "low_resolution": reference.low_resolution,
    }


def shared_hyperparameters() -> dict[str, Hyperparameter]:
    """What every search may vary: the backbone among the registered ones, the recipe.

    Built when a search starts, so a plug-in backbone is a choice.
    """
    searched = [name for name, backbone in backbones.BACKBONES.items() if backbone.searched]
    return {
        "backbone": Hyperparameter(searched, "model.backbone.type", categorical=True),
        "dropout": Hyperparameter({"min": 0.0, "max": 0.5, "step": 0.1}, "model.dropout"),
        "learning_rate": Hyperparameter({"min": 1e-4, "max": 3e-3, "sampling": "log"}, "train.learning_rate"),
        "schedule": Hyperparameter(["constant", "cosine"], "train.schedule", categorical=True),
        "batch_size": Hyperparameter([32, 64, 128], "data.batch_size"),
        # Scales rotation, zoom, shift, contrast and brightness together.
        "augment_strength": Hyperparameter(
            {"min": 0.0, "max": 1.5, "step": 0.5},
            apply=lambda base, value: {"data": {"augment": scaled_augmentation(base.data.augment, value)}},
        ),
    }


@dataclass(frozen=True)
class PluginOption:
    """An option of the plug-ins of one config field, as a search may set it: `width` of the backbones."""

    field: str  # the plug-in field, "model.backbone"
    option: str  # "width"
    chooser: str | None  # the hyperparameter choosing the field's plug-in; None: the base config's plug-in
    readers: tuple[str, ...]  # the plug-ins that have the option
    searched: dict  # plug-in -> the values it searches by default (its `search_defaults`), for those that do

    def hyperparameter(self, spec=None) -> Hyperparameter:
        when = (self.chooser, self.readers) if self.chooser else None
        return Hyperparameter(spec, f"{self.field}.{self.option}", when=when)


def _declared(approach) -> dict[str, Hyperparameter]:
    return {**shared_hyperparameters(), **approach.hyperparameters}


def searchable_options(declared: dict[str, Hyperparameter]) -> dict[str, PluginOption]:
    """Every option of every registered plug-in, by the name a search gives it: the option's own name, or
    `KEY.option` (`loss_weighting.share`) where the plug-ins of two fields, or a declared hyperparameter, share it."""
    choosers = {hyperparameter.field: name for name, hyperparameter in declared.items() if hyperparameter.field}
    found: list[PluginOption] = []
    for field in plugin_fields():
        registry = plugin_registry(f"{field}.type")
        readers: dict[str, list[str]] = {}
        for name, entry in registry.items():
            for item in dataclasses.fields(getattr(entry, "Options", PluginOptions)):
                if item.name != "type":
                    readers.setdefault(item.name, []).append(name)
        for option, names in readers.items():
            defaults = {name: getattr(registry.get(name), "search_defaults", {}) for name in names}
            searched = {name: own[option] for name, own in defaults.items() if option in own}
            found.append(PluginOption(field, option, choosers.get(f"{field}.type"), tuple(names), searched))
    shared = {option.option for option in found
              if option.option in declared or sum(other.option == option.option for other in found) > 1}
    return {f"{option.field.split('.')[-1]}.{option.option}" if option.option in shared else option.option: option
            for option in found}


def _options_of(approach) -> dict[str, PluginOption]:
    """The plug-in options a search of `approach` has: every plug-in's, and of the approaches its own."""
    return {name: option for name, option in searchable_options(_declared(approach)).items()
            if option.field != "approach" or approach.name in option.readers}


def hyperparameters_of(approach) -> dict[str, Hyperparameter]:
    """The shared hyperparameters and the approach's own, each plug-in choice followed by the options of its
    plug-ins (then those of the plug-ins a base config fixes), every spec given as a function resolved.

    A plug-in option's spec here is None: what it searches follows from the plug-ins chosen (`default_space`)."""
    declared = _declared(approach)
    options = _options_of(approach)
    ordered = {}
    for name, hyperparameter in declared.items():
        ordered[name] = hyperparameter
        ordered.update({option_name: option.hyperparameter() for option_name, option in options.items()
                        if option.chooser == name})
    ordered.update({name: option.hyperparameter() for name, option in options.items() if option.chooser is None})
    return {name: hyperparameter.resolved() for name, hyperparameter in ordered.items()}


def chosen_plugins(option: PluginOption, space: dict, base: ExperimentConfig) -> list[str]:
    """The plug-ins of the option's field that a search with `space` can choose: the values of its
    chooser, or the base config's plug-in."""
    if option.chooser is not None:
        return possible_values(space[option.chooser]) or []
    plugin = base
    for part in option.field.split("."):
        plugin = getattr(plugin, part)
    return [plugin.type]


def merged_spec(specs: list):
    """One spec trying what each of `specs` tries: itself if they agree, else the union of lists, else a
    range over every bound and value (Keras Tuner takes one spec per name, whatever conditions it has)."""
    distinct = [spec for index, spec in enumerate(specs) if spec not in specs[:index]]
    if len(distinct) <= 1:
        return distinct[0] if distinct else None
    if all(isinstance(spec, list) for spec in distinct):
        values = []
        for spec in distinct:
            values += [value for value in spec if value not in values]
        numbers = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values)
        return sorted(values) if numbers else values
    bounds = [bound for spec in distinct for bound in (
        [spec["min"], spec["max"]] if isinstance(spec, dict) else spec if isinstance(spec, list) else [spec])]
    samplings = {spec.get("sampling", "linear") if isinstance(spec, dict) else "linear" for spec in distinct}
    merged = {"min": min(bounds), "max": max(bounds)}
    return {**merged, "sampling": samplings.pop()} if len(samplings) == 1 else merged


def default_space(approach, given: dict | None = None, base: ExperimentConfig | None = None) -> dict[str, Any]:
    """Hyperparameter name -> default spec, for an approach whose search sets the specs `given`.

    A plug-in option follows its plug-in's choice where a plug-in the search can choose searches it
    (`search_defaults`), with what those plug-ins search: a backbone `tiny` chosen alone tries its own
    widths, not resnet's; the approach's own options are searched too. The options of another plug-in
    the base config fixes (`options.robust`) are searched only when given."""
    given = given or {}
    base = base or ExperimentConfig(approach=approach.name)
    definitions = hyperparameters_of(approach)
    options = _options_of(approach)
    space = {}
    for name, hyperparameter in definitions.items():
        if name not in options:
            space[name] = given.get(name, hyperparameter.spec)
            continue
        if options[name].chooser is None and options[name].field != "approach":
            continue  # a plug-in the base config fixes; the approach is the one the search is of, so its own are searched
        chosen = chosen_plugins(options[name], space, base)
        spec = merged_spec([spec for plugin, spec in options[name].searched.items() if plugin in chosen])
        if spec is not None:
            space[name] = spec
    return space


def possible_values(spec) -> list | None:
    """The values a choice or fixed spec can take; None for a range."""
    if isinstance(spec, list):
        return spec
    return None if isinstance(spec, dict) else [spec]


def check_space(approach, space: dict, base: ExperimentConfig | None = None) -> None:
    """Refuse hyperparameters the approach does not have, options of plug-ins the search never chooses
    (`base`: the search's base config) and ranges where only choices make sense."""
    known = hyperparameters_of(approach)
    options = _options_of(approach)
    base = base or ExperimentConfig(approach=approach.name)
    unknown = sorted(set(space) - set(known))
    old = [name for name in unknown if RENAMED.get(name) in known]
    if old:
        raise UserError(f"Hyperparameter '{old[0]}' is now called '{RENAMED[old[0]]}', the name of the option it sets; "
                        "write that in --hp or the search file.")
    for name in unknown:
        qualified = [qualified for qualified, option in options.items() if option.option == name]
        if qualified:
            raise UserError(
                f"Hyperparameter '{name}' is an option of plug-ins of more than one field; name it {' or '.join(qualified)}."
            )
    if unknown:
        raise UserError(
            f"Unknown hyperparameter '{unknown[0]}' for the {approach.name} approach; expected one of: {', '.join(known)}."
        )
    for name, spec in space.items():
        if known[name].categorical and possible_values(spec) is None:
            raise UserError(f"Hyperparameter '{name}' takes a list of choices or one value, not a range.")
        option = options.get(name)
        chosen = chosen_plugins(option, space, base) if option else []
        if option and not set(chosen) & set(option.readers):
            what = plugin_registry(f"{option.field}.type").what
            raise UserError(
                f"Hyperparameter '{name}' is an option of the {what} {' and '.join(option.readers)}, which this search "
                f"never chooses ({option.field}: {', '.join(map(str, chosen))})."
            )
    declare_space(kt.HyperParameters(), approach, space)  # a malformed spec fails here, before anything runs


def _declare(hp: kt.HyperParameters, name: str, spec):
    if isinstance(spec, list):
        if not spec:
            raise UserError(f"Hyperparameter '{name}' has an empty list of choices.")
        return hp.Choice(name, spec)
    if isinstance(spec, dict):
        unknown = set(spec) - {"min", "max", "step", "sampling"}
        if unknown or not {"min", "max"} <= set(spec):
            raise UserError(f"Range of hyperparameter '{name}' needs 'min' and 'max' (and may have 'step', 'sampling').")
        bounds = [spec["min"], spec["max"]] + ([spec["step"]] if spec.get("step") is not None else [])
        kind = hp.Int if all(isinstance(bound, int) for bound in bounds) else hp.Float
        try:
            return kind(name, spec["min"], spec["max"], step=spec.get("step"), sampling=spec.get("sampling", "linear"))
        except (TypeError, ValueError) as error:
            raise UserError(f"Range of hyperparameter '{name}' is invalid ({error}).") from None
    return hp.Fixed(name, spec)


def declare_space(hp: kt.HyperParameters, approach, space: dict) -> dict[str, Any]:
    """Register every hyperparameter of `space` in `hp`; returns their values (None when inactive)."""
    definitions = hyperparameters_of(approach)
    values = {}
    for name, spec in space.items():
        condition = definitions[name].when
        if condition is None or condition[0] not in space:
            values[name] = _declare(hp, name, spec)
            continue
        parent, when = condition
        parent_values = possible_values(space[parent])
        allowed = [value for value in parent_values if value in when]
        if not allowed:
            values[name] = None  # can never be active: not part of this search
        elif len(parent_values) == 1:
            values[name] = _declare(hp, name, spec)  # the parent is fixed to a value that activates it
        else:
            with hp.conditional_scope(parent, allowed):
                values[name] = _declare(hp, name, spec)
    return values


def config_for(hp: kt.HyperParameters, approach, space: dict, base: ExperimentConfig) -> ExperimentConfig:
    """The base config with the trial's hyperparameters set into its fields (declaring them in `hp`)."""
    definitions = hyperparameters_of(approach)
    overrides: dict = {}
    for name, value in declare_space(hp, approach, space).items():
        if value is not None:
            overrides = deep_merge(overrides, definitions[name].overrides(base, value))
    return merge(base, overrides)


def choice_configs(approach, space: dict, base: ExperimentConfig) -> list[ExperimentConfig]:
    """Configs that between them take every choice of every hyperparameter of `space` (ranges left at the base).

    The first has each choice at its first value; each other one changes a single choice.
    """
    definitions = hyperparameters_of(approach)
    choices = {name: possible_values(spec) for name, spec in space.items() if possible_values(spec)}

    def overrides(values: dict) -> dict:
        merged: dict = {}
        for name, value in values.items():
            condition = definitions[name].when
            if condition is not None and condition[0] in values and values[condition[0]] not in condition[1]:
                continue  # inactive with these values, as in a trial: resnet's depth means nothing to LeNet
            merged = deep_merge(merged, definitions[name].overrides(base, value))
        return merged

    first = {name: values[0] for name, values in choices.items()}
    return [merge(base, overrides(first))] + [
        merge(base, overrides({**first, name: value})) for name, values in choices.items() for value in values[1:]
    ]
