"""Search spaces: which hyperparameters a search may vary, and how a trial's values become a config.

A hyperparameter is declared once (`mtl.searchable.Hyperparameter`), with the config field it sets
and the values it may take (its spec). The shared ones are below, with each registered backbone's
own; each approach adds its own (`Approach.hyperparameters`).
A spec is a list (a choice), `{"min", "max"[, "step", "sampling"]}` (a range; integers if every
bound is) or anything else (a fixed value). Search files and `--hp` replace specs, never fields.
"""

from typing import Any

import keras_tuner as kt

from mtl.config import AugmentConfig, ExperimentConfig, deep_merge, merge, plugin_registry
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


def searched_options(choice: str, hyperparameter: Hyperparameter) -> dict[str, Hyperparameter]:
    """The options that the plug-ins a choice of plug-in picks from search (each one's `search_defaults`),
    each active when one of the plug-ins that has it is chosen: the backbones' width and depth, the
    fixed weighting's emotion weight, a plug-in's own. The first plug-in to declare an option gives its spec."""
    registry = plugin_registry(hyperparameter.field)
    if registry is None:
        return {}
    searched = {name: getattr(entry, "search_defaults", {}) for name, entry in registry.items()}
    section = hyperparameter.field[: -len(".type")]
    options = {}
    for defaults in searched.values():
        for option, spec in defaults.items():
            readers = tuple(name for name, other in searched.items() if option in other)
            options.setdefault(option, Hyperparameter(spec, f"{section}.{option}", when=(choice, readers)))
    return options


def hyperparameters_of(approach) -> dict[str, Hyperparameter]:
    """The shared hyperparameters and the approach's own, each plug-in choice followed by its plug-ins'
    searched options, every spec given as a function resolved."""
    declared = {**shared_hyperparameters(), **approach.hyperparameters}
    ordered = {}
    for name, hyperparameter in declared.items():
        ordered[name] = hyperparameter
        for option, searched in searched_options(name, hyperparameter).items():
            if option not in declared:
                ordered.setdefault(option, searched)
    return {name: hyperparameter.resolved() for name, hyperparameter in ordered.items()}


def default_space(approach) -> dict[str, Any]:
    """Hyperparameter name -> default spec, for an approach."""
    return {name: hyperparameter.spec for name, hyperparameter in hyperparameters_of(approach).items()}


def possible_values(spec) -> list | None:
    """The values a choice or fixed spec can take; None for a range."""
    if isinstance(spec, list):
        return spec
    return None if isinstance(spec, dict) else [spec]


def check_space(approach, space: dict) -> None:
    """Refuse hyperparameters the approach does not have and ranges where only choices make sense."""
    known = hyperparameters_of(approach)
    unknown = sorted(set(space) - set(known))
    old = [name for name in unknown if RENAMED.get(name) in known]
    if old:
        raise UserError(f"Hyperparameter '{old[0]}' is now called '{RENAMED[old[0]]}', the name of the option it sets; "
                        "write that in --hp or the search file.")
    if unknown:
        raise UserError(
            f"Unknown hyperparameter '{unknown[0]}' for the {approach.name} approach; expected one of: {', '.join(known)}."
        )
    for name, spec in space.items():
        if known[name].categorical and possible_values(spec) is None:
            raise UserError(f"Hyperparameter '{name}' takes a list of choices or one value, not a range.")
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
