"""`mtl tune`: Keras Tuner searches on the sample write a best config, resume, and share out over workers.

Every search here is a real one on the bundled sample, one epoch a trial, LeNet only, so the
numbers mean nothing; the tests check what the search does with trials, files and processes.
"""

import gc
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner as kt
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorflow.python.framework.func_graph import FuncGraph

from conftest import run_cli
from mtl.config import AugmentConfig, ExperimentConfig, config_from_dict, load_config
from mtl import approaches
from mtl.tuning.space import choice_configs, config_for, default_space, scaled_augmentation

QUICK = ("--max-epochs", "1", "--epochs", "1", "--hp", "backbone=lenet")


def tune_command(approach, directory, *options) -> list[str]:
    return [sys.executable, "-m", "mtl", "tune", approach, "--directory", str(directory), *QUICK, *options]


def trials_of(directory: Path) -> dict[str, dict]:
    """trial id -> trial.json of a search directory."""
    return {
        path.parent.name.removeprefix("trial_"): json.loads(path.read_text())
        for path in sorted((directory / "trials").glob("trial_*/trial.json"))
    }


def hparams_sessions(logdir: Path) -> dict[str, set[str]]:
    """Trial folder -> names of the hyperparameters its HParams session records."""
    sessions = {}
    for events in logdir.glob("*/execution0/events.out.tfevents.*"):
        for event in event_file_loader.LegacyEventFileLoader(str(events)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    sessions[events.parent.parent.name] = set(data.session_start_info.hparams)
    return sessions


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def traced_training_steps() -> int:
    """How many traced Keras training/validation steps are alive in this process."""
    gc.collect()
    return sum(isinstance(obj, FuncGraph) and obj.name.startswith("one_step_on_data") for obj in gc.get_objects())


@pytest.fixture(scope="module")
def multitask_search(tmp_path_factory):
    """A 2-trial random search of the multitask approach (teachers and cross-labels made first).

    Returns the directory, the command's output and how many traced steps it left alive.
    """
    directory = tmp_path_factory.mktemp("search") / "multitask"
    before = traced_training_steps()
    code, out, err = run_cli("tune", "multitask", "--directory", directory, "--tuner", "random", "--max-trials", "2", *QUICK)
    assert code == 0, err
    return directory, out, traced_training_steps() - before


def test_every_choice_of_a_space_makes_a_valid_config_without_the_options_of_plugins_not_chosen():
    # depth is a choice, but only the residual backbones have it: LeNet's configs must not get it.
    multitask = approaches.get("multitask")
    space = {**default_space(multitask), "backbone": ["lenet", "resnet"], "depth": [1, 2]}
    configs = choice_configs(multitask, space, ExperimentConfig(approach="multitask"))

    backbones = [config.to_dict()["model"]["backbone"] for config in configs]
    assert {"type": "lenet"} in backbones and {"type": "resnet", "width": 16, "depth": 1} in backbones
    assert all(backbone == {"type": "lenet"} or backbone["type"] == "resnet" for backbone in backbones)


def test_hyperparameters_set_config_fields_and_inactive_ones_keep_the_base_values():
    base = ExperimentConfig(approach="multitask")
    hp = kt.HyperParameters()
    hp.values.update({"backbone": "lenet", "width": 16, "batch_size": 128, "pseudo_labels": "threshold",
                      "confidence": 0.7, "loss_weighting": "uncertainty", "augment_strength": 0.0})

    multitask = approaches.get("multitask")
    config = config_for(hp, multitask, default_space(multitask), base)

    assert (config.model.backbone.type, config.data.batch_size) == ("lenet", 128)
    assert config.to_dict()["model"]["backbone"] == {"type": "lenet"}  # width means nothing to LeNet
    assert config.options.pseudo_labels.confidence == 0.7
    assert config.options.loss_weighting.type == "uncertainty"  # the fixed weights' ratio is not searched with it
    assert config.data.augment.rotation == 0 and not config.data.augment.flip
    assert config.data.augment.grayscale_probability == base.data.augment.grayscale_probability


@pytest.fixture
def narrow_backbone():
    """A backbone `narrow` with a `width` of its own, searched at other values than resnet's, for one test."""
    from dataclasses import dataclass

    from mtl.config import PluginOptions, number
    from mtl.models import backbones

    @dataclass(frozen=True)
    class NarrowOptions(PluginOptions):
        width: int = number(4, at_least=1, at_most=8)

    backbones.register("narrow", options=NarrowOptions, search_defaults={"width": [4, 8]})(backbones.lenet)
    try:
        yield
    finally:
        backbones.BACKBONES.remove("narrow")


def settled_space(approach_name, given, base=None):
    """The space `mtl tune APPROACH --hp ...` settles on: the defaults given the choices, then what was given."""
    from mtl.tuning.search import resolve_settings
    from mtl.tuning.options import TuneRequest

    hp = tuple(f"{name}={json.dumps(spec)}" for name, spec in given.items())
    base = base or ExperimentConfig(approach=approach_name)
    return resolve_settings(TuneRequest(tuner="random", hp=hp), base, {}).space


def test_a_plugin_chosen_alone_searches_its_own_values_of_an_option_and_together_the_values_of_both(narrow_backbone):
    assert settled_space("multitask", {"backbone": ["narrow"]})["width"] == [4, 8]
    assert settled_space("multitask", {"backbone": ["resnet"]})["width"] == [16, 32]
    assert settled_space("multitask", {"backbone": ["narrow", "resnet"]})["width"] == [4, 8, 16, 32]
    assert "width" not in settled_space("multitask", {"backbone": ["lenet"]})  # nothing chosen has a width


def test_every_option_of_a_plugin_the_search_can_choose_is_a_hyperparameter():
    dwa = settled_space("multitask", {"loss_weighting": ["dwa", "fixed"], "temperature": [1.0, 3.0]})
    assert dwa["temperature"] == [1.0, 3.0] and "temperature" not in settled_space("multitask", {})

    hp = kt.HyperParameters()
    hp.values.update({"loss_weighting": "dwa", "temperature": 3.0})
    config = config_for(hp, approaches.get("multitask"), dwa, ExperimentConfig(approach="multitask"))
    assert config.options.loss_weighting == config_from_dict(
        {"options": {"loss_weighting": {"type": "dwa", "temperature": 3.0}}}).options.loss_weighting

    # A plug-in no hyperparameter chooses is the base config's: its options are searched when named.
    group_dro = config_from_dict({"approach": "separate", "options": {"robust": "group_dro"}})
    assert settled_space("separate", {"step_size": [0.01, 0.1]}, group_dro)["step_size"] == [0.01, 0.1]


def test_an_approach_s_own_options_are_hyperparameters_of_its_searches_only():
    from mtl.errors import UserError

    space = settled_space("crosslabel", {"four_class_epochs": [2, 3]})
    hp = kt.HyperParameters()
    hp.values.update({"backbone": "lenet", "four_class_epochs": 3})
    config = config_for(hp, approaches.get("crosslabel"), space, ExperimentConfig(approach="crosslabel"))
    assert config.approach.four_class_epochs == 3 and config.to_dict()["approach"]["four_class_epochs"] == 3
    with pytest.raises(UserError, match="^Unknown hyperparameter 'four_class_epochs' for the multitask approach"):
        settled_space("multitask", {"four_class_epochs": [2, 3]})


@pytest.mark.parametrize(
    "given,sentence",
    [
        ({"temperature": [1.0], "loss_weighting": ["fixed"]},
         "Hyperparameter 'temperature' is an option of the loss weighting dwa, which this search never chooses "
         "(options.loss_weighting: fixed)."),
        ({"step_size": [0.1]},
         "Hyperparameter 'step_size' is an option of the group-robust method group_dro, which this search never chooses "
         "(options.robust: none)."),
    ],
)
def test_an_option_of_no_plugin_the_search_chooses_is_refused_in_one_sentence(given, sentence):
    from mtl.errors import UserError

    with pytest.raises(UserError) as error:
        settled_space("multitask", given)
    assert str(error.value) == sentence


def test_an_option_name_two_plugin_fields_share_is_named_by_its_field_and_the_bare_name_is_refused():
    from dataclasses import dataclass

    from mtl import labels
    from mtl.config import PluginOptions, number
    from mtl.errors import UserError

    @labels.register("weighed_soft")
    class WeighedSoft(labels.LabelSource):  # an option named as the dwa weighting's
        @dataclass(frozen=True)
        class Options(PluginOptions):
            temperature: float = number(1.0, above=0)

        search_defaults = {"temperature": [0.5, 1.0]}

    try:
        space = settled_space("multitask", {"loss_weighting.temperature": [3.0]})
        assert space["pseudo_labels.temperature"] == [0.5, 1.0] and space["loss_weighting.temperature"] == [3.0]
        with pytest.raises(UserError, match="^Hyperparameter 'temperature' is an option of plug-ins of more than one "
                                            "field; name it pseudo_labels.temperature or loss_weighting.temperature.$"):
            settled_space("multitask", {"temperature": [3.0]})
    finally:
        labels.LABEL_SOURCES.remove("weighed_soft")


def test_augment_strength_one_is_the_base_augmentation():
    assert config_from_dict({"data": {"augment": scaled_augmentation(None, 1.0)}}).data.augment == AugmentConfig()


@pytest.mark.slow
def test_a_two_trial_search_writes_a_best_config_that_trains(multitask_search, tmp_path):
    directory, out, _ = multitask_search
    trials = trials_of(directory)
    assert sorted(trials) == ["0", "1"] and {trial["status"] for trial in trials.values()} == {"COMPLETED"}
    best = max(trials.values(), key=lambda trial: trial["score"])
    assert "| trial | val_mean_accuracy |" in out and str(directory / "best_config.json") in out

    config = load_config(directory / "best_config.json")
    assert config.approach.type == "multitask" and config.train.epochs == 1
    assert config.train.learning_rate == best["hyperparameters"]["values"]["learning_rate"]
    assert config.data.batch_size == best["hyperparameters"]["values"]["batch_size"]
    # Every trial is a row of TensorBoard's HParams dashboard.
    assert set(hparams_sessions(directory / "tensorboard")) == set(trials)

    code, _, err = run_cli(
        "train", "multitask", "--config", directory / "best_config.json", "--no-evaluate",
        "--set", f"options.teachers={directory / 'teachers'}", "--runs-dir", tmp_path, "--name", "best",
    )
    assert code == 0, err
    assert (tmp_path / "best" / "model.keras").is_file()


@pytest.mark.slow
def test_finished_trials_leave_no_traced_graphs_behind(multitask_search):
    # Each trial traces its own training step; keeping them all would grow memory trial after trial.
    assert multitask_search[2] <= 0


@pytest.mark.slow
def test_other_settings_in_a_search_directory_are_refused_unless_overwrite(multitask_search, tmp_path):
    directory = tmp_path / "search"
    shutil.copytree(multitask_search[0], directory)
    before = trials_of(directory)

    code, _, err = run_cli("tune", "multitask", "--directory", directory, "--tuner", "random", "--max-trials", "3", *QUICK)

    assert code == 2 and "max_trials: 2 there, 3 now" in err and "Traceback" not in err
    assert trials_of(directory) == before

    code, _, err = run_cli(
        "tune", "multitask", "--directory", directory, "--tuner", "random", "--max-trials", "1", *QUICK,
        "--hp", 'pseudo_labels="none"', "--overwrite",
    )
    assert code == 0, err
    assert sorted(trials_of(directory)) == ["0"] and not (directory / "crosslabeled").exists()


@pytest.mark.parametrize(
    "options,message",
    [
        (("--hp", "colour=[1,2]"), "Unknown hyperparameter 'colour'"),
        (("--tuner", "hyperband", "--max-trials", "3"), "--max-trials is for the random and bayesian"),
        (("--worker", "w0", "--overwrite"), "never for a worker"),
        (("--worker", "chief2"), "reserves for the chief"),
        (("--tuner", "random", "--max-trials", "0"), "--max-trials must be positive"),
    ],
)
def test_mistaken_search_options_are_one_sentence_and_exit_2(tmp_path, options, message):
    code, _, err = run_cli("tune", "separate", "--directory", tmp_path / "search", *QUICK, *options)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_search_is_asked_for_by_a_plain_dataclass_which_the_command_line_fills():
    from mtl.cli import build_parser
    from mtl.tuning.options import TuneRequest
    from mtl.tuning.search import resolve_settings

    arguments = build_parser().parse_args(["tune", "multitask", "--tuner", "random", "--max-trials", "3",
                                           "--hp", "batch_size=[32,64]", "--backbone", "lenet", "--chief"])
    request = TuneRequest.from_arguments(arguments)
    assert request == TuneRequest(tuner="random", max_trials=3, hp=("batch_size=[32,64]",), backbone="lenet", chief=True)

    settings = resolve_settings(request, ExperimentConfig(approach="multitask"), {})
    assert (settings.tuner, settings.max_trials, settings.space["backbone"], settings.space["batch_size"]) == (
        "random", 3, "lenet", [32, 64])
    with pytest.raises(Exception, match="positive whole numbers"):  # the same checks as the command line's
        resolve_settings(TuneRequest(tuner="random", max_trials=0), ExperimentConfig(approach="multitask"), {})


@pytest.mark.slow
def test_a_killed_search_resumes_without_repeating_finished_trials(tmp_path):
    directory = tmp_path / "search"
    command = tune_command("separate", directory, "--tuner", "random", "--max-trials", "2")
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None:
            trials = trials_of(directory) if (directory / "trials").is_dir() else {}
            if trials.get("0", {}).get("status") == "COMPLETED" and "1" in trials:
                break  # trial 0 is done and trial 1 is in flight
            time.sleep(0.1)
        first.kill()
        first.wait(timeout=30)
    finally:
        stop(first)
    finished = {path: path.read_bytes() for path in (directory / "trials" / "trial_0").iterdir()}
    assert trials_of(directory)["1"]["status"] == "RUNNING"

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=180)

    assert rerun.returncode == 0, rerun.stderr
    trials = trials_of(directory)
    assert sorted(trials) == ["0", "1"] and {trial["status"] for trial in trials.values()} == {"COMPLETED"}
    assert {path: path.read_bytes() for path in finished} == finished  # trial 0 was not run again
    oracle = json.loads((directory / "trials" / "oracle.json").read_text())
    assert oracle["run_times"] == {"0": 1, "1": 1}  # trial 1 ran to its end once, after the restart
    assert (directory / "best_config.json").is_file()


@pytest.mark.slow
def test_a_chief_and_two_workers_run_every_trial_once(tmp_path):
    directory = tmp_path / "search"
    search = ("--tuner", "random", "--max-trials", "3", "--oracle-port", str(free_port()))
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("chief", "w0", "w1")}
    processes = {}
    try:
        processes["chief"] = subprocess.Popen(
            tune_command("separate", directory, *search, "--chief"), stdout=logs["chief"], stderr=subprocess.STDOUT
        )
        for worker in ("w0", "w1"):
            processes[worker] = subprocess.Popen(
                tune_command("separate", directory, *search, "--worker", worker),
                stdout=logs[worker],
                stderr=subprocess.STDOUT,
            )
        for name in ("w0", "w1", "chief"):
            assert processes[name].wait(timeout=240) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    finally:
        for process in processes.values():
            stop(process)
        for log in logs.values():
            log.close()

    trials = trials_of(directory)
    assert sorted(trials) == ["0", "1", "2"] and {trial["status"] for trial in trials.values()} == {"COMPLETED"}
    oracle = json.loads((directory / "trials" / "oracle.json").read_text())
    assert oracle["run_times"] == dict.fromkeys(trials, 1) and oracle["ongoing_trials"] == {}
    assert (directory / "best_config.json").is_file()
    assert "| trial | val_mean_accuracy |" in (tmp_path / "chief.log").read_text()
    for worker in ("w0", "w1"):
        assert "has no trials left" in (tmp_path / f"{worker}.log").read_text()


def test_an_old_hyperparameter_name_is_one_sentence_naming_the_new_one(tmp_path):
    code, _, err = run_cli("tune", "multitask", "--directory", tmp_path / "search", *QUICK, "--hp", "confidence_threshold=[0.8,0.9]")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith(
        "Hyperparameter 'confidence_threshold' is now called 'confidence', the name of the option it sets; "
        "write that in --hp or the search file."
    )


def test_a_search_directory_from_before_the_renames_is_refused_naming_the_new_names(tmp_path):
    from mtl.errors import UserError
    from mtl.tuning.options import TuneRequest
    from mtl.tuning.search import SETTINGS_FILE, claim_directory, resolve_settings

    settings = resolve_settings(TuneRequest(), ExperimentConfig(approach="multitask"), {})
    old = settings.to_json()
    old["space"] = {{"confidence": "confidence_threshold", "emotion_weight": "emotion_loss_weight"}.get(name, name): spec
                    for name, spec in old["space"].items()}
    (tmp_path / SETTINGS_FILE).write_text(json.dumps(old))

    with pytest.raises(UserError, match=r"from before its hyperparameters were renamed \(confidence_threshold is now "
                                        r"confidence, emotion_loss_weight is now emotion_weight\), which cannot be resumed"):
        claim_directory(tmp_path, settings, overwrite=False, worker=False)
    assert json.loads((tmp_path / SETTINGS_FILE).read_text()) == old  # left as it was
