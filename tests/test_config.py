"""The config: each field's type and allowed values, declared once and checked whenever a config is read."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from mtl.config import ExperimentConfig, ModelConfig, config_from_dict, deep_merge, load_config, merge, migrated
from mtl.errors import UserError
from mtl.models import backbones
from mtl.training import make_optimizer

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize(
    "values,field,expected",
    [
        ({"train": {"learning_rate": 1}}, ("train", "learning_rate"), 1.0),  # an int where a float goes
        ({"train": {"epochs": 1}}, ("train", "epochs"), 1),
        ({"approach": {"type": "crosslabel", "four_class_epochs": None}}, ("approach", "four_class_epochs"), None),
        ({"model": {"dropout": 0}}, ("model", "dropout"), 0.0),
        ({"model": {"dropout": 0.99}}, ("model", "dropout"), 0.99),
        ({"data": {"image_size": 16}}, ("data", "image_size"), 16),
        ({"data": {"validation_fraction": 0.5}}, ("data", "validation_fraction"), 0.5),
        ({"data": {"emotion_proportion": None}}, ("data", "emotion_proportion"), None),
        ({"data": {"color": "gray"}}, ("data", "color"), "gray"),
        ({"data": {"augment": None}}, ("data", "augment"), None),
        ({"data": {"augment": {"zoom": [-0.5, 1]}}}, ("data", "augment", "zoom"), (-0.5, 1.0)),
        ({"data": {"augment": {"rotation": 0}}}, ("data", "augment", "rotation"), 0.0),
        ({"options": {"pseudo_labels": {"type": "threshold", "confidence": 1}}}, ("options", "pseudo_labels", "confidence"), 1.0),
        ({"options": {"pseudo_labels": "none"}}, ("options", "pseudo_labels", "type"), "none"),
        ({"train": {"optimizer": "sgd", "schedule": "cosine"}}, ("train", "optimizer"), "sgd"),
        ({"approach": "multitask", "model": {"backbone": "dsresnet"}}, ("model", "backbone", "type"), "dsresnet"),
        ({"model": {"backbone": {"type": "resnet", "width": 48}}}, ("model", "backbone", "width"), 48),
    ],
)
def test_edge_values_are_accepted_as_their_declared_type(values, field, expected):
    config = config_from_dict(values)
    value = config
    for name in field:
        value = getattr(value, name)
    assert value == expected and type(value) is type(expected)


def test_a_saved_config_reads_back_as_the_same_config():
    config = config_from_dict({"data": {"augment": {"zoom": [0, 0.3]}}, "train": {"optimizer": "adamw"}})
    assert config_from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_merge_is_checked_like_a_config_file():
    # Search trials and --set values reach the config through merge.
    with pytest.raises(UserError) as error:
        merge(ExperimentConfig(), {"options": {"pseudo_labels": {"type": "threshold", "confidence": 1.5}}})
    assert str(error.value) == "Config field 'options.pseudo_labels.confidence' must be a number in (0, 1], got 1.5."


@pytest.mark.parametrize(
    "values,sentence",
    [
        ({"train": {"epochs": "abc"}}, "Config field 'train.epochs' must be a whole number in [1, 100000], got 'abc'."),
        ({"train": {"epochs": True}}, "Config field 'train.epochs' must be a whole number in [1, 100000], got True."),
        (
            {"data": {"augment": {"zoom": [0.1]}}},
            "Config field 'data.augment.zoom' must be a list of 2 numbers in (-1, 1], got [0.1].",
        ),
        (
            {"data": {"emotion_proportion": 1}},
            "Config field 'data.emotion_proportion' must be a number in (0, 1) or null, got 1.",
        ),
        ({"data": {"color": "sepia"}}, "Config field 'data.color' must be one of: rgb, gray, got 'sepia'."),
        ({"train": 5}, "Config section 'train' must be a mapping of its fields, got 5."),
        ([1, 2], "A config must be a mapping of field names to values, got [1, 2]."),
        ({"train": {"epoch": 3}}, "Unknown config field 'train.epoch'; expected one of: budget, deterministic, early_stopping_patience, "
         "epochs, label_smoothing, learning_rate, optimizer, schedule, seed, strategy, warmup_epochs, "
         "weight_averaging, weight_decay, worker_wait_seconds."),
        # A plug-in's options are checked like every field.
        ({"model": {"backbone": {"type": "resnet", "widht": 8}}},
         "Unknown config field 'model.backbone.widht'; the backbone 'resnet' has the options: depth, width."),
        ({"model": {"backbone": {"type": "lenet", "width": 8}}},
         "Unknown config field 'model.backbone.width'; the backbone 'lenet' has no options."),
        ({"options": {"loss_weighting": {"temperature": 3}}},
         "Config field 'options.loss_weighting' must be a plug-in's name or a mapping with its \"type\" and options, "
         "got {'temperature': 3}."),
        ({"options": {"robust": {"type": "group_dro", "step_size": 0}}},
         "Config field 'options.robust.step_size' must be a number > 0, got 0."),
    ],
)
def test_a_refused_value_is_one_sentence_naming_the_field_the_value_and_what_is_allowed(values, sentence):
    with pytest.raises(UserError) as error:
        config_from_dict(values)
    assert str(error.value) == sentence


def test_registry_choices_follow_what_is_registered():
    with pytest.raises(UserError, match="'model.backbone' must be one of: lenet, resnet, dsresnet, got 'tiny'"):
        config_from_dict({"model": {"backbone": "tiny"}})
    backbones.register("tiny")(backbones.lenet)
    try:
        assert config_from_dict({"model": {"backbone": "tiny"}}).model.backbone.type == "tiny"
    finally:
        backbones.BACKBONES.remove("tiny")


def test_a_plugin_is_its_name_or_its_type_with_the_options_it_declares():
    by_name = config_from_dict({"model": {"backbone": "resnet"}, "options": {"loss_weighting": "dwa"}})
    assert by_name.to_dict()["model"]["backbone"] == {"type": "resnet", "width": 32, "depth": 1}
    assert by_name.to_dict()["options"]["loss_weighting"] == {"type": "dwa", "temperature": 2.0}
    with_options = config_from_dict({"options": {"robust": {"type": "group_dro", "step_size": 0.1}}})
    assert with_options.options.robust.step_size == 0.1
    # Made in Python, a section takes a plug-in's name too.
    assert ModelConfig(backbone="dsresnet").backbone == config_from_dict({"model": {"backbone": "dsresnet"}}).model.backbone


def test_a_merge_naming_another_plugin_starts_from_its_defaults_and_the_same_one_keeps_its_options():
    base = config_from_dict({"model": {"backbone": {"type": "resnet", "width": 48}}})
    assert merge(base, {"model": {"backbone": {"depth": 2}}}).model.backbone.width == 48
    assert merge(base, {"model": {"backbone": {"type": "resnet", "depth": 2}}}).model.backbone.width == 48
    assert merge(base, {"model": {"backbone": {"type": "dsresnet"}}}).model.backbone.width == 32
    assert merge(base, {"model": {"backbone": "lenet"}}).to_dict()["model"]["backbone"] == {"type": "lenet"}
    assert merge(base, {"model": {"backbone": "resnet"}}).model.backbone.width == 48  # named again, as {"type": ...}


def test_an_approach_is_a_plugin_saved_as_its_name_alone_while_its_options_are_its_defaults():
    plain = config_from_dict({"approach": "crosslabel"})
    assert plain.approach.type == "crosslabel" and plain.approach.four_class_epochs is None
    assert plain.to_dict()["approach"] == "crosslabel"  # as every config and run saved it before

    own = config_from_dict({"approach": {"type": "crosslabel", "four_class_epochs": 3}})
    assert own.to_dict()["approach"] == {"type": "crosslabel", "four_class_epochs": 3}
    assert config_from_dict(json.loads(json.dumps(own.to_dict()))) == own
    assert merge(own, {"approach": "crosslabel"}).approach.four_class_epochs == 3  # `mtl train crosslabel --config`
    assert merge(own, {"approach": {"four_class_epochs": 5}}).approach.four_class_epochs == 5
    assert merge(own, {"approach": "multitask"}).to_dict()["approach"] == "multitask"
    assert ExperimentConfig(approach="crosslabel") == plain  # made in Python, by name too

    with pytest.raises(UserError) as error:
        config_from_dict({"approach": {"type": "separate", "four_class_epochs": 3}})
    assert str(error.value) == "Unknown config field 'approach.four_class_epochs'; the approach 'separate' has no options."


def test_a_config_written_before_plugins_had_options_reads_as_its_new_form():
    old = {
        "model": {"backbone": "resnet", "width": 48, "depth": 2, "dropout": 0.3},
        "options": {"pseudo_labels": "threshold", "confidence_threshold": 0.8, "loss_weighting": "dwa",
                    "dwa_temperature": 3.0, "gradnorm_alpha": 1.5, "gender_loss_weight": 2.0, "robust": "group_dro",
                    "group_dro_step_size": 0.05},
    }
    new = {
        "model": {"backbone": {"type": "resnet", "width": 48, "depth": 2}, "dropout": 0.3},
        "options": {"pseudo_labels": {"type": "threshold", "confidence": 0.8},
                    "loss_weighting": {"type": "dwa", "temperature": 3.0},  # gradnorm's and fixed's settings meant nothing
                    "robust": {"type": "group_dro", "step_size": 0.05}},
    }
    assert config_from_dict(old) == config_from_dict(new)
    # Without a plug-in named, the old fields served the old defaults: LeNet has no width, "fixed" its weights.
    defaults = config_from_dict({"model": {"width": 64}, "options": {"emotion_loss_weight": 2.0}})
    assert defaults.model.backbone.type == "lenet" and defaults.options.loss_weighting.emotion_weight == 2.0


def test_the_four_class_epochs_of_a_config_written_before_approaches_had_options_are_crosslabel_s():
    assert config_from_dict({"approach": "crosslabel", "train": {"four_class_epochs": 3}}) == config_from_dict(
        {"approach": {"type": "crosslabel", "four_class_epochs": 3}})
    # Its null said "train.epochs", the option's default; beside another approach it meant nothing.
    assert config_from_dict({"approach": "crosslabel", "train": {"four_class_epochs": None}}).to_dict()["approach"] == "crosslabel"
    assert config_from_dict({"approach": "separate", "train": {"four_class_epochs": 3}}).to_dict()["approach"] == "separate"
    assert migrated({"train": {"four_class_epochs": 3}}, within={"approach": "crosslabel"}) == {
        "train": {}, "approach": {"type": "crosslabel", "four_class_epochs": 3}}


def test_reading_the_config_module_loads_no_tensorflow():
    # Registries import TensorFlow, so their names are looked up only when a config is checked.
    check = "import sys, mtl.config; assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)"
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def committed_json():
    """(path, contents) of every JSON file committed under experiments/."""
    for path in sorted(EXPERIMENTS.rglob("*.json")):
        yield path, json.loads(path.read_text())


def committed_configs():
    """Every experiment config committed under experiments/: run configs, comparisons, search bases."""
    for path, values in committed_json():
        if path.name == "comparison.json":  # as `mtl compare` saves it; older ones map variants to configs directly
            yield from values.get("variants", values).values()
        elif "base_config" in values:
            yield values["base_config"]
        elif "base" in values:
            yield values["base"]
            yield from (deep_merge(values["base"], variant) for variant in (values.get("variants") or {}).values()
                        if "refit" not in variant)  # a refit variant trains nothing: the test below reads it
        elif "approach" in values and "data" in values:
            yield values


def test_every_committed_experiment_config_is_still_valid():
    configs = list(committed_configs())
    assert len(configs) >= 10
    for values in configs:
        config_from_dict(values)


def test_every_committed_refit_variant_refits_a_variant_its_comparison_trains():
    from mtl.compare import refit_variants, variant_configs

    specs = [spec for _, spec in committed_json() if "base" in spec
             and any("refit" in variant for variant in (spec.get("variants") or {}).values())]
    assert specs  # experiments/configs/generalisation.json has two
    for spec in specs:
        assert refit_variants(spec, list(variant_configs(spec)))


@pytest.mark.parametrize(
    "name,optimizer_class",
    [("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW), ("sgd", keras.optimizers.SGD)],
)
def test_train_optimizer_picks_the_keras_optimizer(tiny_config, name, optimizer_class):
    config = tiny_config(train={"optimizer": name, "learning_rate": 0.01, "weight_decay": 0.001})
    optimizer = make_optimizer(config.train, steps_per_epoch=3, steps=6)
    assert type(optimizer) is optimizer_class
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    if name == "sgd":
        assert optimizer.momentum == 0.9 and optimizer.nesterov
    if name == "adamw":
        assert optimizer.weight_decay == pytest.approx(0.001)


def test_cosine_schedule_decays_the_learning_rate_over_the_whole_run(tiny_config):
    config = tiny_config(train={"optimizer": "sgd", "schedule": "cosine", "learning_rate": 0.1})
    schedule = make_optimizer(config.train, steps_per_epoch=3, steps=6).get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay"
    assert schedule["config"]["initial_learning_rate"] == 0.1 and schedule["config"]["decay_steps"] == 6


def test_a_key_set_twice_in_a_config_file_is_refused_naming_it(tmp_path):
    config_file = tmp_path / "config.json"
    config_file.write_text('{"train": {"epochs": 3, "learning_rate": 0.01, "epochs": 5}}')
    with pytest.raises(UserError, match=r"^Config file '.*config\.json' sets 'epochs' twice in one object; keep one of them\.$"):
        load_config(config_file)
