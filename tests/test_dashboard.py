"""mtl.dashboard: HParams rows read back through a real TensorBoard server, and the pictures."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard_server import read_experiment_from_server, read_hparams_from_server, tensorboard_server

from mtl.dashboard import figures
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
    write_hparams_config(logdir, CONFIG_HPARAMS, CONFIG_METRICS)
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
