"""The `mtl` command end to end: train -> predict -> evaluate, and one clear sentence for every mistake."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from conftest import SAMPLE, copy_sample_images, needs_file_modes, run_cli, write_image
from mtl import predict
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER

MTL = Path(sys.executable).parent / "mtl"


def assert_one_error_line(code, err, *fragments):
    """Exit status 2, exactly one line on stderr (the sentence), no traceback; it names `fragments`."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mtl: error: ")
    for fragment in fragments:
        assert str(fragment) in lines[0]


def snapshot(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Three faces to predict on: a sample JPEG, a FER2013 PNG, and an odd-sized RGBA PNG."""
    folder = tmp_path_factory.mktemp("faces")
    paths = copy_sample_images(SAMPLE / "gender" / "Validation" / "male", folder, 1)
    paths += copy_sample_images(SAMPLE / "fer2013" / "train" / "happy", folder, 1)
    paths.append(write_image(folder / "odd.png", "RGBA", size=(13, 200)))
    return paths


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of the trained run, for commands that write into it."""
    return Path(shutil.copytree(trained_run[0], tmp_path / "run"))


# ---------------------------------------------------------------- train -> predict -> evaluate


@pytest.mark.slow
def test_train_writes_a_run_and_prints_the_headline(trained_run):
    run_dir, out = trained_run
    assert f"Run written to {run_dir}" in out
    printed = dict(re.findall(r"^  (\w+_accuracy): (\d\.\d{4})$", out, re.MULTILINE))
    assert set(printed) == {
        "gender_accuracy", "emotion_accuracy", "happy_house_accuracy", "happy_house_detected_accuracy",
        "utkface_test_gender_accuracy", "gender_worst_group_accuracy", "emotion_worst_group_accuracy",
        "validation_gender_accuracy", "validation_emotion_accuracy",
        # separate's two networks: each one's worst group (class x source), and the worse of the two
        "validation_gender_worst_group_accuracy", "validation_emotion_worst_group_accuracy",
        "validation_worst_group_accuracy",
    }
    config = json.loads((run_dir / "config.json").read_text())
    assert config["approach"] == "separate"
    assert config["train"]["epochs"] == 1 and config["data"]["batch_size"] == 32 and config["train"]["seed"] == 7
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key, value in printed.items():
        assert metrics["headline"][key] == pytest.approx(float(value), abs=1e-4)
        assert 0 <= metrics["headline"][key] <= 1
    assert (run_dir / "evaluation" / "confusion_gender_test_gender.png").is_file()


@pytest.mark.slow
def test_predict_prints_one_line_per_image(trained_run, faces):
    code, out, err = run_cli("predict", trained_run[0], *faces, "--no-detect")

    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == len(faces)
    pattern = re.compile(
        r"^(?P<image>.+): gender (female|male) \((?P<g>[01]\.\d\d)\), emotion (happy|sad) \((?P<e>[01]\.\d\d)\), "
        r"four (happy|sad)_(female|male) \((?P<f>[01]\.\d\d)\)$"
    )
    for line, face in zip(lines, faces):
        match = pattern.match(line)
        assert match, line
        assert match["image"] == str(face)
        assert float(match["g"]) >= 0.5 and float(match["e"]) >= 0.5  # the most likely of two classes


@pytest.mark.slow
def test_predict_json_gives_probabilities_that_sum_to_one(trained_run, faces):
    code, out, err = run_cli("predict", trained_run[0], *faces, "--json", "--no-detect")

    assert code == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert [result["image"] for result in results] == [str(face) for face in faces]
    for result in results:
        for task in (GENDER, EMOTION, FOUR):
            answer = result[task]
            probabilities = answer["probabilities"]
            assert list(probabilities) == list(CLASSES[task])
            assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
            assert answer["label"] == max(probabilities, key=probabilities.get)
            assert answer["probability"] == probabilities[answer["label"]]
        # Four classes are the product of the two separate models' answers.
        happy_female = result[EMOTION]["probabilities"]["happy"] * result[GENDER]["probabilities"]["female"]
        assert result[FOUR]["probabilities"]["happy_female"] == pytest.approx(happy_female, abs=1e-5)


@pytest.mark.slow
def test_evaluate_overwrites_metrics_only_when_told_and_keeps_what_training_wrote(run_copy):
    before = (run_copy / "metrics.json").read_bytes()
    trained = json.loads(before)

    code, out, err = run_cli("evaluate", run_copy)

    assert_one_error_line(code, err, run_copy / "metrics.json", "--overwrite")
    assert (run_copy / "metrics.json").read_bytes() == before

    code, out, err = run_cli("evaluate", run_copy, "--overwrite")
    assert code == 0, err
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert 0 <= metrics["headline"]["gender_accuracy"] <= 1
    assert "_samples" not in metrics
    assert metrics["training_seconds"] == trained["training_seconds"]
    validation = {key: value for key, value in trained["headline"].items() if key.startswith("validation_")}
    assert validation and metrics["headline"].items() >= validation.items()


def test_evaluate_to_an_existing_folder_is_refused_in_one_sentence(trained_run, tmp_path):
    code, _, err = run_cli("evaluate", trained_run[0], "--output", tmp_path, "--overwrite")
    assert_one_error_line(code, err, tmp_path, "is a folder")


def untrained_run(directory: Path) -> Path:
    """A run of an untrained model with its config: enough for a command to check its arguments against."""
    from mtl.config import ExperimentConfig
    from photos import save_untrained_run

    run = save_untrained_run(directory)
    (run / "config.json").write_text(json.dumps(ExperimentConfig().to_dict()))
    return run


def test_evaluate_to_a_path_under_a_file_or_to_a_link_is_refused_before_any_work(tmp_path):
    run = untrained_run(tmp_path / "run")
    (tmp_path / "a_file").write_text("kept")

    code, out, err = run_cli("evaluate", run, "--output", tmp_path / "a_file" / "metrics.json")
    assert_one_error_line(code, err, f"'{tmp_path / 'a_file'}' is a file")
    assert "evaluating" not in out and (tmp_path / "a_file").read_text() == "kept"

    (tmp_path / "elsewhere.json").write_text("{}")
    for link, target in [("link.json", tmp_path / "elsewhere.json"), ("dangling.json", tmp_path / "nowhere" / "m.json")]:
        (tmp_path / link).symlink_to(target)
        code, out, err = run_cli("evaluate", run, "--output", tmp_path / link, "--overwrite")
        assert_one_error_line(code, err, tmp_path / link, "symbolic link")
    assert (tmp_path / "elsewhere.json").read_text() == "{}" and not (tmp_path / "nowhere").exists()


@needs_file_modes
def test_evaluate_into_a_read_only_folder_is_refused_naming_it_before_any_work(tmp_path, monkeypatch):
    run = untrained_run(tmp_path / "run")
    (run / "metrics.json").write_text("{}")
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    monkeypatch.chdir(read_only)
    try:
        for folder in (read_only, run):
            folder.chmod(0o555)
        code, out, err = run_cli("evaluate")  # the bundled model's metrics go into the working directory
        assert_one_error_line(code, err, read_only, "is not writable")
        code, out, err = run_cli("evaluate", run, "--overwrite")
        assert_one_error_line(code, err, run, "is not writable")
        assert "evaluating" not in out and (run / "metrics.json").read_text() == "{}"
    finally:
        for folder in (read_only, run):
            folder.chmod(0o755)


def test_a_permission_denied_while_working_is_one_sentence_naming_the_path(tmp_path, monkeypatch):
    from mtl import evaluate

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "evaluation" / "confusion.png"))

    monkeypatch.setattr(evaluate, "evaluate_run", denied)
    code, _, err = run_cli("evaluate", untrained_run(tmp_path / "run"), "--output", tmp_path / "m.json")
    assert_one_error_line(code, err, tmp_path / "evaluation" / "confusion.png", "permission denied")


@pytest.mark.slow
def test_evaluate_to_another_file_scores_the_joint_folder(trained_run, joint_folder, tmp_path):
    output = tmp_path / "with_joint.json"
    before = snapshot(trained_run[0])

    code, out, err = run_cli("evaluate", trained_run[0], "--joint-dir", joint_folder, "--output", output)

    assert code == 0, err
    assert f"Metrics written to {output}" in out
    metrics = json.loads(output.read_text())
    assert 0 <= metrics["headline"]["joint_four_class_accuracy"] <= 1
    assert metrics["test_sets"]["joint_test"][FOUR]["images"] == 16
    assert (tmp_path / "with_joint_evaluation" / "confusion_joint_test_four.json").is_file()
    assert snapshot(trained_run[0]) == before  # the run itself is untouched


@pytest.mark.slow
def test_existing_run_directory_is_never_overwritten(trained_run):
    run_dir, _ = trained_run
    before = snapshot(run_dir)

    code, out, err = run_cli("train", "separate", "--epochs", "1", "--runs-dir", run_dir.parent, "--name", run_dir.name)

    assert_one_error_line(code, err, run_dir, "already exists")
    assert snapshot(run_dir) == before


# ---------------------------------------------------------------- mistakes -> exit 2 --------


def test_missing_data_dir(tmp_path):
    code, _, err = run_cli("train", "separate", "--data-dir", tmp_path / "nowhere", "--runs-dir", tmp_path, "--name", "r")
    assert_one_error_line(code, err, tmp_path / "nowhere")
    assert not (tmp_path / "r").exists()


def test_a_missing_test_folder_is_refused_before_training(tmp_path):
    code, _, err = run_cli(
        "train", "separate", "--set", "data.emotion_test=fer2013/nowhere", "--runs-dir", tmp_path, "--name", "r"
    )
    assert_one_error_line(code, err, "nowhere")
    assert not (tmp_path / "r").exists()


def test_data_dir_with_the_wrong_layout(tmp_path):
    data = tmp_path / "data"
    copy_sample_images(SAMPLE / "gender" / "Training" / "female", data / "gender" / "Training" / "women", 2)
    code, _, err = run_cli("train", "multitask", "--data-dir", data, "--runs-dir", tmp_path / "runs", "--name", "r")
    assert_one_error_line(code, err, data / "gender" / "Training", "'female'")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "content",
    [b"this is text, not a face", b"", b"\xff\xd8\xff\xe0\x00\x10JFIF truncated"],
    ids=["text", "zero-byte", "corrupt-jpeg"],
)
def test_predict_on_a_file_that_is_no_image(trained_run, tmp_path, content):
    bad = tmp_path / "face.jpg"
    bad.write_bytes(content)
    code, out, err = run_cli("predict", trained_run[0], bad)
    assert_one_error_line(code, err, bad, "not a readable image")
    assert out == ""


@pytest.mark.slow
def test_predict_on_a_truncated_real_face(trained_run, tmp_path):
    whole = sorted((SAMPLE / "gender" / "Validation" / "female").iterdir())[0].read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(whole[:300])
    code, _, err = run_cli("predict", trained_run[0], bad)
    assert_one_error_line(code, err, bad)


@pytest.mark.slow
def test_predict_on_a_missing_image_or_a_folder(trained_run, tmp_path):
    code, _, err = run_cli("predict", trained_run[0], tmp_path / "missing.png")
    assert_one_error_line(code, err, tmp_path / "missing.png")
    code, _, err = run_cli("predict", trained_run[0], tmp_path)
    assert_one_error_line(code, err, tmp_path)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_missing_run_directory(tmp_path, command, faces):
    extra = [faces[0]] if command == "predict" else []
    code, _, err = run_cli(command, tmp_path / "no_run", *extra)
    assert_one_error_line(code, err, tmp_path / "no_run", "does not exist")


def test_run_directory_without_a_model(tmp_path, faces):
    (tmp_path / "half").mkdir()
    code, _, err = run_cli("predict", tmp_path / "half", faces[0])
    assert_one_error_line(code, err, tmp_path / "half", "model.keras")


def test_unknown_approach_is_refused_by_the_config(tmp_path):
    code, out, err = run_cli("train", "ensemble", "--runs-dir", tmp_path)
    assert_one_error_line(code, err, "'approach'", "'ensemble'", "separate")
    assert not any(tmp_path.iterdir())


def test_unknown_approach_in_a_comparison_config(tmp_path):
    config = tmp_path / "compare.json"
    config.write_text(json.dumps({"variants": {"mine": {"approach": "ensemble"}}}))
    code, _, err = run_cli("compare", "--config", config, "--runs-dir", tmp_path, "--name", "c")
    assert_one_error_line(code, err, "'ensemble'")


def test_teachers_without_a_model_are_refused_before_a_run_directory_is_made(tmp_path):
    runs = tmp_path / "runs"
    command = ["train", "multitask", "--set", "options.robust=balanced", "--runs-dir", runs, "--name", "r"]

    code, _, err = run_cli(*command, "--set", f"options.teachers={tmp_path / 'nowhere'}")

    assert_one_error_line(code, err, f"Teacher run '{tmp_path / 'nowhere'}' holds no model.keras")
    assert not runs.exists()  # else the corrected command, with the same --name, is refused as another config


REFUSED_SETTINGS = [
    "train.epochs=abc", "train.epochs=0", "train.epochs=-1", "train.epochs=2.5", "train.epochs=true",
    "train.learning_rate=abc", "train.learning_rate=0", "train.learning_rate=-1",
    "approach.four_class_epochs=0", "train.seed=-1", "train.weight_decay=-0.1",
    "data.batch_size=0", "data.image_size=0", "data.image_size=15",
    "model.dropout=2", "model.dropout=1", "model.dropout=-0.1", "model.backbone.width=0",
    "data.validation_fraction=0", "data.validation_fraction=1",
    "data.emotion_proportion=0", "data.emotion_proportion=1",
    "train=5", "data.augment=[0.1]", "data.gender_train=null", "data.data_dir=3",
    "data.augment.flip=1", "data.augment.zoom=[0.1]", "data.augment.zoom=[0,0.1,0.2]", "data.augment.zoom=[-1,0]",
    "data.augment.rotation=-0.1", "data.augment.translation=-0.1", "data.augment.contrast=-0.2",
    "data.augment.brightness=-0.2", "data.augment.grayscale_probability=1.5",
    "options.pseudo_labels.confidence=0", "options.pseudo_labels.confidence=1.01", "options.loss_weighting.emotion_weight=-1",
    "data.color=sepia", "train.schedule=step", "train.optimizer=rmsprop", "options.pseudo_labels=fuzzy",
    "approach=ensemble", "model.backbone=vgg16", "options.loss_weighting=magic",
    "train.epochs=1e23", "train.epochs=100001", "data.image_size=100000", "data.batch_size=1000000",
    "model.backbone.width=100000", "model.backbone.depth=65", "train.seed=4294967296", "train.warmup_epochs=1e30",
]
# A plug-in option's setting is tried on a plug-in that has it: LeNet, hard labels and multitask have none.
PLUGIN_WITH_THE_OPTION = {
    "model.backbone.": ("--backbone", "resnet"), "options.pseudo_labels.": ("--set", "options.pseudo_labels=threshold"),
    "approach.": ("--set", "approach=crosslabel"),
}


@pytest.mark.parametrize("setting", REFUSED_SETTINGS)
def test_a_refused_setting_is_one_sentence_and_leaves_no_run_directory(tmp_path, setting):
    field, _, text = setting.partition("=")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text  # --set takes what is not JSON as a string
    plugin = next((chosen for prefix, chosen in PLUGIN_WITH_THE_OPTION.items() if field.startswith(prefix)), ())
    code, _, err = run_cli("train", "multitask", *plugin, "--set", setting, "--runs-dir", tmp_path / "runs", "--name", "r")
    assert_one_error_line(code, err, f"'{field}'", f"got {value!r}")
    assert "must be" in err
    assert not (tmp_path / "runs").exists()  # else retrying with the same --name fails: "already exists"


@pytest.mark.parametrize(
    "option,fragment",
    [(["--backbone", "vgg16"], "'model.backbone'"), (["--epochs", "0"], "'train.epochs'"), (["--config"], "'train'")],
)
def test_options_and_config_files_are_checked_like_set(tmp_path, option, fragment):
    if option == ["--config"]:
        (tmp_path / "config.json").write_text(json.dumps({"train": 5}))
        option.append(tmp_path / "config.json")
    code, _, err = run_cli("train", "separate", *option, "--runs-dir", tmp_path / "runs", "--name", "r")
    assert_one_error_line(code, err, fragment)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "how,fragment",
    [("set", "'data.colour'"), ("file", "'train.epoch'")],
)
def test_unknown_config_field(tmp_path, how, fragment):
    if how == "set":
        args = ["--set", "data.colour=gray"]
    else:
        (tmp_path / "config.json").write_text(json.dumps({"train": {"epoch": 3}}))
        args = ["--config", tmp_path / "config.json"]
    code, _, err = run_cli("train", "separate", *args, "--runs-dir", tmp_path / "runs", "--name", "r")
    assert_one_error_line(code, err, fragment)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_config_file_that_is_not_a_json_mapping(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    code, _, err = run_cli("train", "separate", "--config", tmp_path / "config.json", "--runs-dir", tmp_path)
    assert_one_error_line(code, err, "config")


def test_missing_config_file(tmp_path):
    code, _, err = run_cli("train", "separate", "--config", tmp_path / "nope.json", "--runs-dir", tmp_path)
    assert_one_error_line(code, err, tmp_path / "nope.json")


def test_bad_set_syntax(tmp_path):
    code, _, err = run_cli("train", "separate", "--set", "train.epochs", "--runs-dir", tmp_path)
    assert_one_error_line(code, err, "KEY=VALUE", "'train.epochs'")


@pytest.mark.slow
def test_hdf5_with_the_wrong_keys(trained_run, tmp_path):
    bad = tmp_path / "faces.h5"
    with h5py.File(bad, "w") as file:
        file["x"] = np.zeros((2, 64, 64, 3), np.uint8)
        file["y"] = np.zeros(2)
    code, _, err = run_cli(
        "evaluate", trained_run[0], "--set", f"data.happy_house_test={bad}", "--output", tmp_path / "m.json"
    )
    assert_one_error_line(code, err, bad, "['x', 'y']", "test_set_x")
    assert not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------- the installed script ------


def mtl_script(*args, cwd):
    return subprocess.run(
        [str(MTL), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def without_native_tensorflow_logs(err: str) -> str:
    """Stderr less the lines TensorFlow's C++ runtime prints when it loads (not ours to silence)."""
    native = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl|To enable the following instructions)")
    return "\n".join(line for line in err.splitlines() if not native.match(line))


def test_help_says_what_mtl_is_and_lists_every_command():
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "gender (female/male) and the emotion (happy/sad) of every face" in " ".join(out.split())
    for command in ("train", "evaluate", "refit", "predict", "export", "prepare", "compare", "notebook", "tune"):
        assert re.search(rf"^    {command} ", out, re.MULTILINE), command


def test_version_prints_the_package_version():
    import mtl

    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"mtl {mtl.__version__}"


def test_the_parser_loads_no_tensorflow():
    # So that `mtl --help` and `mtl COMMAND --help` answer at once.
    check = (
        "import sys; from mtl.cli import build_parser; build_parser(); "
        "assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)


def test_a_misspelt_command_is_refused_in_one_sentence_with_the_likeliest_one_before_tensorflow_loads():
    check = (
        "import sys; from mtl.cli import main; code = main(['trian', 'multitask']); "
        "assert not any(m.startswith(('tensorflow', 'keras')) for m in sys.modules); sys.exit(code)"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert_one_error_line(result.returncode, result.stderr, "'trian' is not an mtl command", "did you mean 'train'?")
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["train", "tune"])
def test_command_help_answers(command):
    result = subprocess.run([sys.executable, "-m", "mtl.cli", command, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "approach" in result.stdout


def test_notebook_runs_its_fixed_pair_so_takes_no_variants(tmp_path):
    code, _, err = run_cli("notebook", "--variants", "multitask_masked", "--runs-dir", tmp_path)
    assert code == 2 and "unrecognized arguments: --variants" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_installed_script_says_one_sentence_for_a_bad_path(tmp_path):
    result = mtl_script("predict", tmp_path / "no_run", tmp_path / "face.jpg", cwd=tmp_path)
    assert_one_error_line(result.returncode, without_native_tensorflow_logs(result.stderr), tmp_path / "no_run")
    assert result.stdout == ""


@pytest.mark.slow
def test_evaluate_without_a_run_scores_the_bundled_model_on_the_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    code, out, err = run_cli("evaluate")

    assert code == 0, err
    metrics = json.loads((tmp_path / "bundled_model_metrics.json").read_text())
    assert metrics["approach"] == "multitask" and metrics["test_sets"]["gender_test"]["gender"]["images"] > 0
    assert metrics["headline"]["gender_accuracy"] > 0.75  # a trained model, well above chance on real faces
    assert predict.which_model(predict.bundled_model_path().parent, bundled=True, doing="Scoring") in err.splitlines()


def test_evaluate_without_a_run_says_on_stderr_that_it_scores_the_bundled_model(tmp_path, monkeypatch):
    # The evaluation itself (minutes on the sample) is the slow test's; here only what the command says.
    import mtl.evaluate

    monkeypatch.setattr(mtl.evaluate, "evaluate_run", lambda *args, **kwargs: SimpleNamespace(metrics={"headline": {}}))
    monkeypatch.chdir(tmp_path)

    code, out, err = run_cli("evaluate")

    assert code == 0, err
    shipped = predict.bundled_model_path().parent
    assert err.splitlines() == [predict.which_model(shipped, bundled=True, doing="Scoring")]
    assert err.startswith(f"Scoring the bundled model ({shipped}): multitask, resnet; gender head refitted with groups "
                          "weighed alike (mtl refit); test accuracy gender ")
    assert out.startswith("Metrics written to bundled_model_metrics.json")
