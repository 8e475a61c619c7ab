"""mtl.dashboard: HParams rows read back through a real TensorBoard server, and the pictures."""

import io
import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard_server import (
    read_experiment_from_server,
    read_hparams_from_server,
    read_runs_from_server,
    tensorboard_server,
)

from mtl.compare import METRICS
from mtl.dashboard import figures
from mtl.dashboard.comparison import SUMMARY_RUN, TRIAL_ID_CHARACTERS, short_names, write_comparison
from mtl.dashboard.hparams import write_hparams, write_hparams_config

RUNS = {
    "run_a": (
        {"approach": "separate", "lr": 0.001, "batch_size": 32, "augment": True},
        {"gender/accuracy": 0.8125, "emotion/accuracy": 0.7},
    ),
    "run_b": (
        {"approach": "multitask", "lr": 0.01, "batch_size": 64, "augment": False},
        {"gender/accuracy": 0.9, "emotion/accuracy": 0.66},
    ),
    # Same hparams as run_a: must still be its own row, not averaged into run_a's.
    "run_c": (
        {"approach": "separate", "lr": 0.001, "batch_size": 32, "augment": True},
        {"gender/accuracy": 0.5, "emotion/accuracy": 0.25},
    ),
}
CONFIG_HPARAMS = {
    "approach": ["separate", "multitask"],
    "lr": [0.001, 0.01],
    "batch_size": [32, 64],
    "augment": [True, False],
}
CONFIG_METRICS = {"gender/accuracy": "Gender accuracy", "emotion/accuracy": "Emotion accuracy"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A TensorBoard serving RUNS and the HParams config; yields (url, logdir). Starts in about 10 s."""
    logdir = tmp_path_factory.mktemp("logs")
    write_hparams_config(logdir / "summary", CONFIG_HPARAMS, CONFIG_METRICS)
    for run, (hparams, metrics) in RUNS.items():
        write_hparams(logdir / run, hparams, metrics)
    with tensorboard_server(logdir, tmp_path_factory.mktemp("tensorboard")) as url:
        yield url, logdir


@pytest.mark.slow
def test_hparams_and_metrics_read_back_from_tensorboard(server):
    url, logdir = server
    # --reload_task blocking: the server read all event files before it began to answer.
    rows = read_hparams_from_server(url)

    expected = [
        {
            "run": run,
            "group": str((logdir / run).resolve()),
            "hparams": hparams,
            # Scalars are stored as float32; the plugin returns that value as a double.
            "metrics": {tag: float(np.float32(value)) for tag, value in metrics.items()},
        }
        for run, (hparams, metrics) in RUNS.items()
    ]
    assert rows == expected
    assert len({row["group"] for row in rows}) == len(RUNS)  # one dashboard row per run
    # Equal above also for ints (32 == 32.0); say plainly that types survive where they can.
    assert all(isinstance(row["hparams"]["augment"], bool) for row in rows)
    assert all(isinstance(row["hparams"]["approach"], str) for row in rows)


@pytest.mark.slow
def test_config_declares_dashboard_columns(server):
    url, _ = server
    experiment = read_experiment_from_server(url)

    assert experiment["metrics"] == CONFIG_METRICS
    # The plugin sorts each discrete domain; ints are declared (and returned) as floats.
    assert experiment["hparams"] == {
        "approach": ["multitask", "separate"],
        "augment": [False, True],
        "batch_size": [32.0, 64.0],
        "lr": [0.001, 0.01],
    }


# A tiny comparison as mtl.compare hands it over: per-seed rows and per-variant means, no training.
COLUMNS = ["approach", "backbone", "color", "epochs", "seed", "pseudo_labels", "loss_weighting", "robust"]
VARIANTS = {
    "separate": {"approach": "separate", "pseudo_labels": "n/a", "loss_weighting": "n/a", "robust": "none"},
    "crosslabel_hard": {"approach": "crosslabel", "pseudo_labels": "hard", "loss_weighting": "n/a", "robust": "n/a"},
    "multitask_masked": {"approach": "multitask", "pseudo_labels": "none", "loss_weighting": "fixed", "robust": "none"},
}


def tiny_comparison(seeds: int, shift: float = 0.0):
    """(per-seed rows, per-variant mean rows) of three variants; no joint set, so no four-class accuracy."""
    runs = []
    for k in range(seeds):
        for number, (variant, options) in enumerate(VARIANTS.items()):
            runs.append({
                "variant": f"{variant}/seed-{k}", "backbone": "lenet", "color": "rgb", "epochs": 1, "seed": str(3 + k),
                **options, **{key: None for key in METRICS},
                "gender_accuracy": 0.5 + 0.1 * number + 0.01 * k + shift, "emotion_accuracy": 0.625,
                "parameters": 1234.0 + number,
            })
    means = []
    for variant, options in VARIANTS.items():
        mine = [row for row in runs if row["variant"].startswith(f"{variant}/")]
        mean = {"variant": variant, "backbone": "lenet", "color": "rgb", "epochs": 1, **options, "seeds": seeds}
        for key in METRICS:
            values = [row[key] for row in mine if row[key] is not None]
            mean[f"{key}_mean"] = float(np.mean(values)) if values else None
        means.append(mean)
    return runs, means


def summaries(folder):
    """Every summary value in the event files directly inside `folder`, as (tag, value)."""
    found = []
    for event_file in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            found += [(value.tag, value) for value in event.summary.value]
    return found


@pytest.fixture(scope="module")
def comparison_server(tmp_path_factory):
    """A TensorBoard on a two-seed tiny comparison written twice (as a resumed one is); yields (url, root, runs)."""
    root = tmp_path_factory.mktemp("comparison")
    stale_runs, stale_means = tiny_comparison(seeds=2, shift=-0.25)
    write_comparison(root, stale_runs, stale_means, COLUMNS, METRICS, "| stale |\n|---|")
    runs, means = tiny_comparison(seeds=2)
    write_comparison(root, runs, means, COLUMNS, METRICS, "| variant |\n|---|\n| separate |")
    with tensorboard_server(root, tmp_path_factory.mktemp("tensorboard")) as url:
        yield url, root, runs


@pytest.mark.slow
def test_each_row_of_a_comparison_has_a_whole_short_name_and_its_variant_and_seed(comparison_server):
    url, _, runs = comparison_server
    rows = read_hparams_from_server(url)

    assert sorted(row["run"] for row in rows) == sorted(
        [row["variant"] for row in runs] + [f"{variant}/mean" for variant in VARIANTS]
    )
    names = [row["group"] for row in rows]
    assert len(set(names)) == len(rows) and max(map(len, names)) <= TRIAL_ID_CHARACTERS
    by_run = {row["run"]: row for row in rows}
    assert by_run["multitask_masked/seed-1"]["group"] == "m_masked s1"
    assert by_run["separate/mean"]["group"] == "separate mean"
    for run, row in by_run.items():
        variant, _, seed = run.rpartition("/")
        assert row["hparams"]["variant"] == variant  # the whole name, in a column of its own
        assert row["hparams"]["seed"] == ("mean" if seed == "mean" else str(3 + int(seed.removeprefix("seed-"))))


@pytest.mark.slow
def test_comparison_metrics_are_in_percent_from_the_last_write_and_only_those_measured(comparison_server):
    url, _, runs = comparison_server
    rows = {row["run"]: row for row in read_hparams_from_server(url)}
    experiment = read_experiment_from_server(url)

    assert set(experiment["metrics"]) == {"hparams/gender_accuracy", "hparams/emotion_accuracy", "hparams/parameters"}
    assert experiment["metrics"]["hparams/gender_accuracy"] == f"{METRICS['gender_accuracy']}, %"
    assert "percent" in experiment["descriptions"]["hparams/gender_accuracy"]
    assert experiment["metrics"]["hparams/parameters"] == METRICS["parameters"]  # a count, not scaled
    for run in runs:  # the second write's values: the stale first one left nothing behind
        shown = rows[run["variant"]]["metrics"]
        assert shown["hparams/gender_accuracy"] == pytest.approx(run["gender_accuracy"] * 100, abs=1e-4)
        assert shown["hparams/parameters"] == run["parameters"]
    assert rows["separate/mean"]["metrics"]["hparams/gender_accuracy"] == pytest.approx(50.5, abs=1e-4)


@pytest.mark.slow
def test_the_dashboard_shows_seed_and_label_source_and_robust_method_by_default(comparison_server):
    url, _, _ = comparison_server
    experiment = read_experiment_from_server(url)

    assert experiment["shown"] == ["approach", "pseudo_labels", "robust", "seed", "variant"]
    assert set(experiment["hparams"]) == {"variant", *COLUMNS}
    assert experiment["hparams"]["seed"] == ["3", "4", "mean"]


@pytest.mark.slow
def test_a_comparison_has_no_run_named_dot_and_its_results_are_text_tables(comparison_server):
    url, root, _ = comparison_server
    runs = read_runs_from_server(url)

    assert "." not in runs and SUMMARY_RUN in runs
    assert not list(root.glob("events.out.tfevents.*"))
    [(_, results)] = [(tag, value) for tag, value in summaries(root / SUMMARY_RUN) if tag == "results"]
    assert results.metadata.plugin_data.plugin_name == "text"
    assert tf.make_ndarray(results.tensor).item().decode() == "| variant |\n|---|\n| separate |"
    texts = {tag: value for tag, value in summaries(root / "crosslabel_hard" / "seed-0") if tag == "test_metrics"}
    table = tf.make_ndarray(texts["test_metrics"].tensor).item().decode()
    assert f"| {METRICS['gender_accuracy']}, % | 60.00 |" in table.splitlines()
    assert f"| {METRICS['parameters']} | 1235 |" in table.splitlines()


def test_at_one_seed_a_comparison_writes_no_mean_rows(tmp_path):
    runs, means = tiny_comparison(seeds=1)
    write_comparison(tmp_path, runs, means, COLUMNS, METRICS)

    assert not (tmp_path / "separate" / "mean").exists()
    sessions = [
        plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
        for run in runs
        for _, value in summaries(tmp_path / run["variant"])
        if value.metadata.plugin_data.plugin_name == "hparams"
    ]
    assert sorted(session.group_name for session in sessions) == ["c_hard s0", "m_masked s0", "separate s0"]


def test_short_names_are_whole_where_they_fit_distinct_and_short():
    variants = ["separate", "crosslabel_hard", "multitask_masked", "multitask_utk_balanced", "multitask_utk_dro",
                "label_smoothing", "lo_smoothing", "warmup"]
    names = short_names(variants)
    assert names["separate"] == "separate" and names["warmup"] == "warmup"
    assert names["crosslabel_hard"] == "c_hard" and names["multitask_utk_dro"] == "m_utk_dro"
    assert names["label_smoothing"] == "ls" and names["lo_smoothing"] == "ls2"  # all initials, then numbered
    assert len(set(names.values())) == len(variants)
    assert all(len(name) + len(" mean") <= TRIAL_ID_CHARACTERS for name in names.values())


def test_last_step_is_the_row_value(tmp_path):
    """Without a server: the metric scalars land in the run dir under their own tags."""
    write_hparams(tmp_path / "run", {"x": 1}, {"acc": 0.25}, step=0)
    write_hparams(tmp_path / "run", {"x": 1}, {"acc": 0.75}, step=3)
    values = {}
    for event_file in sorted((tmp_path / "run").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.tag == "acc":
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    assert values == {0: 0.25, 3: 0.75}


def test_confusion_matrix_image():
    image = figures.confusion_matrix_image(np.array([[5, 2], [1, 7]]), ["happy", "sad"], "emotion")
    assert image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 200 and image.shape[1] >= 200
    assert image.min() < 50 and image.max() == 255  # drawn, not blank
    bigger = figures.confusion_matrix_image(np.eye(4, dtype=int), list("abcd"), "four")
    assert bigger.shape[0] > image.shape[0]
    with pytest.raises(ValueError):
        figures.confusion_matrix_image(np.eye(3, dtype=int), ["a", "b"], "wrong size")


def _has_red(image: np.ndarray) -> bool:
    return bool(np.any(np.all(image == figures.WRONG, axis=-1)))


def test_face_grid_image_marks_wrong_predictions():
    faces = np.full((10, 48, 48, 3), 128, dtype=np.uint8)
    labels = ["happy"] * 10

    all_right = figures.face_grid_image(faces, labels, labels, columns=4)
    assert all_right.dtype == np.uint8 and all_right.ndim == 3 and all_right.shape[2] == 3
    five_columns = figures.face_grid_image(faces, labels, labels, columns=5)  # 2 rows, not 3
    assert five_columns.shape[1] > all_right.shape[1] and five_columns.shape[0] < all_right.shape[0]
    assert not _has_red(all_right)

    one_wrong = figures.face_grid_image(faces, ["sad"] + labels[1:], labels, columns=4)
    assert one_wrong.shape == all_right.shape
    assert _has_red(one_wrong)
    # The red is on the first face only (the top-left cell).
    red_rows, red_cols = np.nonzero(np.all(one_wrong == figures.WRONG, axis=-1))
    assert red_cols.max() < one_wrong.shape[1] // 4 and red_rows.max() < one_wrong.shape[0] // 3

    unlabelled = figures.face_grid_image(faces[:3, :, :, :1], ["happy"] * 3)  # grey faces, no truth
    assert unlabelled.shape[2] == 3 and not _has_red(unlabelled)
    with pytest.raises(ValueError):
        figures.face_grid_image(faces, labels[:5])
    with pytest.raises(ValueError):
        figures.face_grid_image(faces.astype(np.float32), labels)


def test_face_grid_labels_are_readable_at_tensorboard_s_card_width():
    faces = np.full((figures.GRID_FACES, 64, 64, 3), 200, dtype=np.uint8)
    labels = ["happy_female"] * figures.GRID_FACES
    grid = figures.face_grid_image(faces, ["sad_female"] + labels[1:], labels)

    # Under the first face (and its red border): its two red lines, "sad_female" and "true: happy_female".
    face_bottom = 4 + 64 * math.ceil(figures.FACE_PIXELS / 64) + 2 * 4
    labels_of_first = grid[face_bottom + 1:, : grid.shape[1] // figures.GRID_COLUMNS]
    inked = np.nonzero(np.any(np.all(labels_of_first == figures.WRONG, axis=-1), axis=1))[0]
    first_line = inked[: np.argmax(np.diff(inked) > 1) + 1]
    on_screen = 335 / grid.shape[1]  # TensorBoard fits an image to its card, 335 px wide by default
    assert (first_line.max() - first_line.min() + 1) * on_screen >= 11  # letters at least 11 px high on screen
    assert not np.all(labels_of_first[:, -20:] == 255)  # "true: happy_female" is not cut short: it fills the cell


def test_write_images_writes_an_image_summary(tmp_path):
    small = np.zeros((20, 30, 3), dtype=np.uint8)
    large = np.full((40, 25, 3), 200, dtype=np.uint8)
    figures.write_images(tmp_path, "faces", [small, large], step=7)

    found = []
    for event_file in tmp_path.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                if value.tag == "faces":
                    found.append((event.step, value))
    assert len(found) == 1
    step, value = found[0]
    assert step == 7
    assert value.metadata.plugin_data.plugin_name == "images"
    # An image summary tensor is [width, height, png, png, ...]; sizes padded to the largest.
    width, height, *pngs = value.tensor.string_val
    assert (int(width), int(height)) == (30, 40)
    decoded = [np.asarray(Image.open(io.BytesIO(png))) for png in pngs]
    assert [d.shape for d in decoded] == [(40, 30, 3), (40, 30, 3)]
    assert np.array_equal(decoded[1][:40, :25], large)


def test_save_png_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    path = figures.save_png(image, tmp_path / "sub" / "image.png")
    assert path.exists()
    assert np.array_equal(np.asarray(Image.open(path)), image)
