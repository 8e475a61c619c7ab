"""A kill or a full disk at any moment of a write leaves something the same command resumes from.

Rows of the reliability table (issue 20): the epoch checkpoints of a stage in training, the file
cache of decoded images, and a full disk wherever a run writes.
"""

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl.checkpoints import BEST_STATE, RANDOM_STATES, WEIGHTS, Checkpoints, epochs_finished, save_arrays, save_json, save_weights
from mtl.config import DataConfig
from mtl.data import pipeline
from mtl.errors import UserError
from mtl.runs import atomic_path, write_json

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(ROOT)}


def tiny_trainer() -> keras.Model:
    """A compiled model with a built optimizer: what `fit` checkpoints, in a few hundred parameters."""
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4, name="dense")(keras.layers.Dense(16, name="hidden")(inputs)))
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def checkpoint(checkpoints: Checkpoints, model: keras.Model, epochs: int) -> None:
    """One epoch's checkpoint, every weight set to `epochs`, so a reader can tell whose files it holds."""
    model.set_weights([np.full(weight.shape, epochs, weight.dtype) for weight in model.get_weights()])
    save_arrays(checkpoints, epochs, RANDOM_STATES, [np.full(3, epochs)])
    save_weights(checkpoints, epochs, model)
    save_json(checkpoints, epochs, BEST_STATE, {"epoch": epochs})
    checkpoints.commit(epochs)


def restored_epoch(directory: Path) -> tuple[int, keras.Model]:
    model = tiny_trainer()
    return Checkpoints(directory).restore(model), model


def assert_whole(directory: Path, epochs: int, model: keras.Model) -> None:
    """The restored checkpoint is the one of `epochs`, all of it: weights, random states and state agree."""
    folder = directory / f"epoch-{epochs:05d}"
    assert all(np.all(weight == epochs) for weight in model.get_weights())
    with np.load(folder / RANDOM_STATES) as saved:
        assert np.all(saved["arr_0"] == epochs)
    assert json.loads((folder / BEST_STATE).read_text()) == {"epoch": epochs}


def test_a_checkpoint_holds_every_file_of_its_epoch_and_only_the_two_newest_are_kept(tmp_path):
    checkpoints, model = Checkpoints(tmp_path), tiny_trainer()
    for epochs in (1, 2, 3):
        checkpoint(checkpoints, model, epochs)

    assert [epochs for epochs, _ in checkpoints.finished()] == [3, 2]
    assert epochs_finished(tmp_path) == 3
    epochs, restored = restored_epoch(tmp_path)
    assert epochs == 3
    assert_whole(tmp_path, 3, restored)


@pytest.mark.parametrize("damage", ["truncated", "emptied"])
def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before_saying_so(tmp_path, capsys, damage):
    checkpoints, model = Checkpoints(tmp_path), tiny_trainer()
    checkpoint(checkpoints, model, 1)
    checkpoint(checkpoints, model, 2)
    newest = tmp_path / "epoch-00002" / WEIGHTS
    if damage == "truncated":  # a kill inside h5py's write: "OSError ... truncated file"
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    else:  # a full disk: a valid file without the layers ("expected 2 variables, but received 0")
        inputs = keras.Input((8,))
        keras.Model(inputs, keras.layers.Identity()(inputs)).save_weights(newest)

    epochs, restored = restored_epoch(tmp_path)

    assert epochs == 1
    assert_whole(tmp_path, 1, restored)
    out = capsys.readouterr().out
    assert f"The checkpoint {tmp_path / 'epoch-00002'} cannot be read" in out and "resuming from the one before" in out


def test_a_checkpoint_keeps_the_training_seconds_spent_up_to_it_for_the_fit_that_resumes(tmp_path):
    checkpoints, model = Checkpoints(tmp_path), tiny_trainer()
    checkpoint(checkpoints, model, 1)  # written without seconds, as checkpoints were before they were kept
    older = Checkpoints(tmp_path)
    assert older.restore(tiny_trainer()) == 1 and older.restored_seconds() == 0
    save_weights(checkpoints, 2, model)
    save_json(checkpoints, 2, BEST_STATE, {"epoch": 2})
    checkpoints.commit(2, seconds=12.5)

    resumed = Checkpoints(tmp_path)
    assert resumed.restore(tiny_trainer()) == 2 and resumed.restored_seconds() == 12.5


def test_when_no_checkpoint_can_be_read_the_stage_starts_afresh_from_its_initial_weights(tmp_path, capsys):
    checkpoints, model = Checkpoints(tmp_path), tiny_trainer()
    checkpoint(checkpoints, model, 1)
    weights = tmp_path / "epoch-00001" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    fresh = tiny_trainer()
    initial = fresh.get_weights()

    assert Checkpoints(tmp_path).restore(fresh) == 0

    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), initial))
    assert "starting the stage afresh" in capsys.readouterr().out


# A process that checkpoints epoch after epoch as fast as it can, until it is killed.
WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_checkpoints import Checkpoints, checkpoint, tiny_trainer, epochs_finished
directory = Path(sys.argv[1])
checkpoints, model = Checkpoints(directory), tiny_trainer()
epochs = epochs_finished(directory)
print("ready", flush=True)
while True:
    epochs += 1
    checkpoint(checkpoints, model, epochs)
"""


@pytest.mark.slow
def test_a_kill_at_any_moment_of_checkpointing_leaves_a_whole_checkpoint_to_resume_from(tmp_path):
    rng = random.Random(20)
    newest = 0
    for _ in range(50):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(ROOT / "tests")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENVIRONMENT,
        )
        assert writer.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0, 0.3))  # a few checkpoints on, at a random point inside one
        writer.send_signal(signal.SIGKILL)
        writer.wait()

        epochs, restored = restored_epoch(tmp_path)

        assert epochs >= newest  # never less than a checkpoint that was whole before
        if epochs:
            assert_whole(tmp_path, epochs, restored)
        newest = epochs
    assert newest > 0


@pytest.mark.slow
def test_a_training_killed_while_it_checkpoints_resumes_when_run_again(tmp_path):
    command = [sys.executable, "-m", "mtl", "train", "multitask", "--epochs", "2", "--backbone", "lenet",
               "--set", "data.batch_size=32", "--runs-dir", str(tmp_path), "--name", "killed"]
    backup = tmp_path / "killed" / "backup" / "multitask"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENVIRONMENT)
    try:
        deadline = time.monotonic() + 600
        # The second epoch's checkpoint in writing: the first is whole, the second half-written.
        while not (backup / ".epoch-00002.tmp").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert (backup / "epoch-00001").is_dir()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENVIRONMENT)

    assert again.returncode == 0, again.stderr
    assert "Resuming after epoch 1" in again.stdout
    assert (tmp_path / "killed" / "metrics.json").is_file()


# ---------------------------------------------------------------- the file cache ----------------


class OneSource:
    paths = ("a.jpg", "b.jpg")


# Reads the first element through the file cache, then dies as a kill would: no clean-up runs.
HALF_CACHED = """
import os, sys
sys.path.insert(0, sys.argv[2])
import tensorflow as tf
from mtl.config import DataConfig
from mtl.data import pipeline
from test_checkpoints import OneSource
examples = pipeline.cached(tf.data.Dataset.range(10), OneSource(), DataConfig(cache=sys.argv[1]))
reading = iter(examples)  # kept: an iterator dropped before the exit would clean up as a kill cannot
next(reading)
os._exit(0)
"""


@pytest.mark.slow
def test_a_file_cache_left_half_written_by_a_killed_process_is_written_again(tmp_path):
    died = subprocess.run([sys.executable, "-c", HALF_CACHED, str(tmp_path), str(ROOT / "tests")], env=ENVIRONMENT)
    assert died.returncode == 0
    assert list(tmp_path.glob("images-*_0.lockfile"))  # what made TensorFlow refuse the cache for good

    examples = pipeline.cached(tf.data.Dataset.range(10), OneSource(), DataConfig(cache=str(tmp_path)))

    assert list(examples.as_numpy_iterator()) == list(range(10))
    assert list(examples.as_numpy_iterator()) == list(range(10))  # now read from the cache
    assert list(tmp_path.glob("images-*.index")) and not list(tmp_path.glob("*.lockfile"))


def test_a_file_cache_another_live_process_writes_is_refused_naming_it(tmp_path):
    class OtherSource:
        paths = ("c.jpg",)

    pipeline.cached(tf.data.Dataset.range(3), OtherSource(), DataConfig(cache=str(tmp_path)))  # holds the writer's lock
    held = pipeline._CLAIMED.popitem()[1]  # from here on the lock is another holder's, as a second process sees it
    try:
        with pytest.raises(UserError, match=rf"data.cache '{tmp_path}' is being written by process {os.getpid()}"):
            pipeline.cached(tf.data.Dataset.range(3), OtherSource(), DataConfig(cache=str(tmp_path)))
    finally:
        os.close(held)


# ---------------------------------------------------------------- a full disk ----------------


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_a_file_is_written_is_one_sentence_naming_it_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"old": True})
    monkeypatch.setattr(Path, "write_text", no_space)

    with pytest.raises(UserError, match=rf"The disk holding '{path}' is full: writing there needs about [\d.]+ (bytes|kB|MB) and"):
        write_json(path, {"new": True})

    assert json.loads(path.read_text()) == {"old": True}
    assert [child.name for child in tmp_path.iterdir()] == ["metrics.json"]


def test_a_full_disk_in_h5py_words_while_checkpointing_keeps_the_checkpoint_before(tmp_path, monkeypatch):
    checkpoints, model = Checkpoints(tmp_path), tiny_trainer()
    checkpoint(checkpoints, model, 1)

    def full(*args, **kwargs):  # h5py's OSError carries no errno, only the system's words
        raise OSError("Unable to synchronously create file (file write failed: errno = 28, "
                      "error message = 'No space left on device')")

    monkeypatch.setattr(keras.Model, "save_weights", full)
    # The folder of checkpoints is named, not the hidden one being written, with what the last one took.
    with pytest.raises(UserError, match=rf"The disk holding '{re.escape(str(tmp_path))}' is full: writing there "
                                        r"needs about \d+ kB .*run the same command again"):
        checkpoint(checkpoints, model, 2)

    assert [epochs for epochs, _ in checkpoints.finished()] == [1]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (needs root; skipped elsewhere), unmounted afterwards."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.slow
def test_training_onto_a_full_disk_is_one_sentence_and_the_same_command_resumes_once_there_is_space(small_disk):
    command = [sys.executable, "-m", "mtl", "train", "multitask", "--epochs", "2", "--backbone", "lenet",
               "--set", "data.batch_size=32", "--runs-dir", str(small_disk), "--name", "full"]

    full = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENVIRONMENT)

    assert full.returncode == 2, full.stderr
    message = full.stderr.strip().splitlines()[-1]
    assert message.startswith("mtl: error: The disk holding ") and "is full" in message and "MB" in message
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)

    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENVIRONMENT)

    assert again.returncode == 0, again.stderr
    assert "Resuming the unfinished run" in again.stdout
    assert (small_disk / "full" / "metrics.json").is_file()
