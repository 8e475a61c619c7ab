"""Plug-ins from outside the package: one module, imported with `--plugin` or MTL_PLUGINS, runs every command.

The module below is written into a temporary folder, never into the package. It defines an
approach, a backbone with a layer of its own, a loss weighting, a label source and a kind of data
source, each with an option of its own; the commands find all of them through the registries, and a
finished run imports the module again by itself.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mtl
from conftest import SAMPLE, run_cli
from mtl.plugins import ENVIRONMENT_VARIABLE, PLUGINS_FILE

PLUGIN = "faces_plugin"
ROOT = Path(mtl.__file__).resolve().parents[1]  # the checkout under test, for the subprocesses
# One epoch of the plug-in's backbone on 16 px faces: the numbers mean nothing, the commands run.
TINY = (
    "--epochs", "1", "--backbone", "tiny", "--set", "data.image_size=16", "--set", "model.backbone.width=4",
    "--set", "data.batch_size=32", "--set", "train.seed=7",
)

# The plug-in's kind of data source with its option: the first 40 sample faces of each gender.
FIRST_40 = 'data.gender_train={"type": "first_of", "path": "gender/Training", "per_class": 40}'

PLUGIN_SOURCE = '''
"""A user's plug-ins: an approach, a backbone, a loss weighting, a label source and a kind of data source."""

import dataclasses
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from mtl import labels, weighting
from mtl.approaches import batches
from mtl.approaches.base import Approach, Stage, register
from mtl.config import PluginOptions, number
from mtl.data import sources
from mtl.models import backbones
from mtl.models.build import build_network
from mtl.tasks import CLASSES, EMOTION, TASKS
from mtl.weighting.base import Weighting


class HalfAndHalf(Approach):
    """Two heads on one backbone; every batch half gender faces, half emotion faces; true labels only."""

    name = "half_and_half"

    @dataclass(frozen=True)
    class Options(PluginOptions):
        head_dropout: float = number(0.5, at_least=0, below=1)  # its network's dropout, whatever model.dropout says

    search_defaults = {"head_dropout": [0.1, 0.2]}

    def hparams(self, config):
        return {"head_dropout": config.approach.head_dropout}

    def stages(self, config):
        model = dataclasses.replace(config.model, dropout=config.approach.head_dropout)
        network = build_network(model, config.data, {task: len(CLASSES[task]) for task in TASKS}, name="halves")
        return [Stage("halves", network)]

    def training_batches(self, config, stage, data, merged_dir):
        mixed = batches.mixed_examples(
            data.images(data.gender_train), data.images(data.emotion_train), 0.5, config.train.seed
        )
        with_targets = batches.batches_with_targets(
            mixed, config, lambda batch_labels, _: labels.task_targets(batch_labels, None, config.options)
        )
        return with_targets, batches.steps_for(len(data.gender_train) + len(data.emotion_train), config)


register(HalfAndHalf)


@keras.saving.register_keras_serializable(package="faces_plugin")
class Scale(layers.Layer):
    """Pixels to [0, 1]; a layer of the plug-in's own, so its models load only once the plug-in is imported."""

    def call(self, images):
        return images / 255.0


@dataclass(frozen=True)
class TinyOptions(PluginOptions):
    width: int = number(4, at_least=1, at_most=64)  # channels of its one convolution


@backbones.register("tiny", options=TinyOptions, min_image_size=8, search_defaults={"width": [4, 8]})
def tiny(images, config):
    x = Scale()(images)
    x = layers.Conv2D(config.backbone.width, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(config.dropout)(x)


@weighting.register("emotion_half")
class EmotionHalf(Weighting):
    """The emotion head's loss counts `share` of the gender head's (half by default)."""

    @dataclass(frozen=True)
    class Options(PluginOptions):
        share: float = number(0.5, at_least=0, at_most=1)

    search_defaults = {"share": [0.25, 0.5]}

    def __init__(self, options, heads, **kwargs):
        super().__init__(options, heads, **kwargs)
        self.share = options.share

    def total_loss(self, losses, present):
        return sum(loss * (self.share if head == EMOTION else 1.0) for head, loss in losses.items())


@labels.register("soft_half")
class SoftHalf(labels.LabelSource):
    """The teacher's probabilities, weighing `weight` of a true label (half by default)."""

    @dataclass(frozen=True)
    class Options(PluginOptions):
        weight: float = number(0.5, above=0, at_most=1)

    def missing(self, placeholder, probabilities, options):
        return probabilities, options.weight * tf.ones_like(placeholder[..., 0])


@dataclass(frozen=True)
class FirstOptions(PluginOptions):
    per_class: int = number(1000, at_least=1)


@sources.source_kind("first_of", options=FirstOptions)
def first_of(path, task, options):
    """A folder of class folders, only the first `per_class` images of each class."""
    whole = sources.task_folder(path, task)
    labels = whole.labels[task]
    keep = np.concatenate([np.flatnonzero(labels == label)[: options.per_class] for label in np.unique(labels)])
    return whole.subset(np.sort(keep), f"{whole.name}[first {options.per_class}]")
'''


@pytest.fixture(scope="module")
def plugin_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugins")
    (folder / f"{PLUGIN}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    return folder


def mtl_command(*args, plugin_folder: Path, environment: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m mtl ARGS` in a fresh process that can import the plug-in module but has not."""
    env = {key: value for key, value in os.environ.items() if key != ENVIRONMENT_VARIABLE}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(plugin_folder)]), TF_CPP_MIN_LOG_LEVEL="3")
    env.update(environment or {})
    return subprocess.run(
        [sys.executable, "-m", "mtl", *map(str, args)], capture_output=True, text=True, env=env, timeout=900
    )


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def plugin_run(plugin_folder, tmp_path_factory) -> Path:
    """A multitask run of the plug-in's backbone, weighting and label source (its teachers trained first)."""
    runs = tmp_path_factory.mktemp("runs")
    result = mtl_command(
        "train", "multitask", "--plugin", PLUGIN, *TINY, "--set", "options.loss_weighting=emotion_half",
        "--set", "options.loss_weighting.share=0.25", "--set", "options.pseudo_labels=soft_half",
        "--set", "options.pseudo_labels.weight=0.75", "--set", FIRST_40, "--runs-dir", runs, "--name", "run",
        plugin_folder=plugin_folder,
    )
    assert result.returncode == 0, result.stderr
    return runs / "run"


@pytest.mark.slow
def test_train_runs_a_plugin_backbone_weighting_and_label_source_and_records_the_module(plugin_run):
    config = json.loads((plugin_run / "config.json").read_text())
    assert config["model"]["backbone"] == {"type": "tiny", "width": 4}
    assert config["options"]["loss_weighting"] == {"type": "emotion_half", "share": 0.25}
    assert config["options"]["pseudo_labels"] == {"type": "soft_half", "weight": 0.75}
    assert config["data"]["gender_train"] == [{"type": "first_of", "path": "gender/Training", "per_class": 40}]
    assert json.loads((plugin_run / PLUGINS_FILE).read_text()) == [PLUGIN]
    assert (plugin_run / "teachers" / "model.keras").is_file()  # soft_half needs teachers, so they were trained
    assert json.loads((plugin_run / "teachers" / PLUGINS_FILE).read_text()) == [PLUGIN]  # reusable from another process
    assert (plugin_run / "metrics.json").is_file()


@pytest.mark.slow
def test_evaluate_and_predict_import_the_run_s_plugins_again_without_being_told(plugin_run, plugin_folder, tmp_path):
    evaluated = mtl_command("evaluate", plugin_run, "--output", tmp_path / "again.json", plugin_folder=plugin_folder)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "again.json").read_text())["headline"]
    face = next((SAMPLE / "gender" / "Validation" / "female").iterdir())
    predicted = mtl_command("predict", plugin_run, face, "--no-detect", plugin_folder=plugin_folder)
    assert predicted.returncode == 0, predicted.stderr
    assert "gender" in predicted.stdout

    # Without the record the plug-in's names are unknown (its kind of source is checked first): the
    # record is what made them work.
    unrecorded = tmp_path / "unrecorded"
    shutil.copytree(plugin_run, unrecorded)
    (unrecorded / PLUGINS_FILE).unlink()
    refused = mtl_command("evaluate", unrecorded, "--output", tmp_path / "refused.json", plugin_folder=plugin_folder)
    assert refused.returncode == 2 and "got 'first_of'" in last_line(refused)


@pytest.mark.slow
def test_compare_runs_two_plugin_variants_named_in_the_environment(plugin_folder, tmp_path):
    spec = tmp_path / "comparison.json"
    spec.write_text(json.dumps({"variants": {
        "halves": {"approach": {"type": "half_and_half", "head_dropout": 0.3}},
        "weighted": {"approach": "multitask", "options": {"pseudo_labels": "none", "loss_weighting": "emotion_half"}},
    }}))

    result = mtl_command(
        "compare", "--config", spec, *TINY, "--runs-dir", tmp_path, "--name", "cmp",
        plugin_folder=plugin_folder, environment={ENVIRONMENT_VARIABLE: PLUGIN},
    )

    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "cmp" / "results.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "head_dropout" in header and "loss_weighting" in header
    assert rows[1].startswith("halves,half_and_half,tiny") and rows[2].startswith("weighted,multitask,tiny")
    assert rows[1].split(",")[header.index("head_dropout")] == "0.3"  # the approach's own option, from the config
    saved = json.loads((tmp_path / "cmp" / "halves" / "seed-0" / "config.json").read_text())
    assert saved["approach"] == {"type": "half_and_half", "head_dropout": 0.3}


@pytest.mark.slow
def test_a_one_trial_search_of_the_plugin_approach_on_the_plugin_backbone(plugin_folder, tmp_path):
    result = mtl_command(
        "tune", "half_and_half", "--plugin", PLUGIN, "--directory", tmp_path / "search", "--tuner", "random",
        "--max-trials", "1", "--max-epochs", "1", *TINY, "--hp", "backbone=tiny", plugin_folder=plugin_folder,
    )

    assert result.returncode == 0, result.stderr
    settings = json.loads((tmp_path / "search" / "search_settings.json").read_text())
    assert settings["space"]["head_dropout"] == [0.1, 0.2]
    assert settings["space"]["width"] == [4, 8]  # the values tiny searches, not resnet's: only tiny is chosen
    best = json.loads((tmp_path / "search" / "best_config.json").read_text())
    assert best["approach"]["type"] == "half_and_half" and best["approach"]["head_dropout"] in (0.1, 0.2)
    assert best["model"]["backbone"]["type"] == "tiny" and best["model"]["backbone"]["width"] in (4, 8)


@pytest.mark.slow
def test_the_default_search_spaces_offer_what_the_plugin_registers(plugin_folder):
    check = textwrap.dedent(f"""
        import json, {PLUGIN}
        from mtl import approaches
        from mtl.tuning.space import default_space, hyperparameters_of
        multitask, crosslabel = approaches.get("multitask"), approaches.get("crosslabel")
        print(json.dumps({{
            "multitask": default_space(multitask), "crosslabel": default_space(crosslabel),
            "width_when": hyperparameters_of(multitask)["width"].when,
            "share_when": hyperparameters_of(multitask)["share"].when,
        }}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(plugin_folder)]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    spaces = json.loads(result.stdout.strip().splitlines()[-1])

    assert spaces["multitask"]["backbone"] == ["lenet", "resnet", "tiny"]  # dsresnet is left out by its own entry
    assert spaces["width_when"] == ["backbone", ["resnet", "dsresnet", "tiny"]]
    assert spaces["multitask"]["width"] == [4, 8, 16, 32]  # what tiny searches and what resnet does
    assert spaces["multitask"]["share"] == [0.25, 0.5]  # a plug-in's own option, searched when it is chosen
    assert spaces["share_when"] == ["loss_weighting", ["emotion_half"]]
    assert "emotion_half" in spaces["multitask"]["loss_weighting"]
    assert spaces["multitask"]["pseudo_labels"] == ["none", "hard", "soft", "threshold", "soft_half"]
    assert spaces["crosslabel"]["pseudo_labels"] == ["hard", "soft", "threshold", "soft_half"]


@pytest.mark.slow
def test_an_unknown_approach_is_one_sentence_listing_the_plugin_s_too(plugin_folder, tmp_path):
    result = mtl_command("train", "nonesuch", "--plugin", PLUGIN, "--runs-dir", tmp_path, plugin_folder=plugin_folder)

    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "half_and_half" in last_line(result) and "separate" in last_line(result)
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_images_smaller_than_the_plugin_backbone_declares_are_refused_in_one_sentence(plugin_folder, tmp_path):
    result = mtl_command(
        "train", "separate", "--plugin", PLUGIN, "--backbone", "tiny", "--set", "data.image_size=6",
        "--runs-dir", tmp_path / "runs", plugin_folder=plugin_folder,
    )

    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert last_line(result) == "mtl: error: Config field 'data.image_size' must be >= 8 for the tiny backbone, got 6."
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_plugin_module_that_cannot_be_imported_is_one_sentence_and_exit_2(how, tmp_path, monkeypatch):
    named = ("--plugin", "no_such_plugin_module") if how == "option" else ()
    if how == "environment":
        monkeypatch.setenv(ENVIRONMENT_VARIABLE, " no_such_plugin_module ,")

    code, _, err = run_cli("train", "separate", *named, "--runs-dir", tmp_path / "runs")

    assert code == 2
    assert err.strip().splitlines() == [
        "mtl: error: Plug-in module 'no_such_plugin_module' cannot be imported "
        "(No module named 'no_such_plugin_module'); install it or put its folder on PYTHONPATH."
    ]
    assert not (tmp_path / "runs").exists()
