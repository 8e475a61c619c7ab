"""Interrupted work resumes: the same command again continues where the killed one stopped.

Each command runs in its own process (as a user runs it), so a kill is a real kill and
TensorFlow's deterministic mode does not leak into other tests.
"""

import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.slow

TRAIN = (
    "train", "multitask", "--epochs", "2", "--backbone", "lenet", "--set", "data.batch_size=32",
    "--set", "options.pseudo_labels=none", "--set", "train.deterministic=true",
)
# Runs `mtl` with a Ctrl-C as the second epoch begins, as a user would press it during training.
INTERRUPTED_AFTER_FIRST_EPOCH = """
import sys
from mtl.cli import main
from mtl.training import EpochCheckpoint
def stop_in_the_second_epoch(self, epoch, logs=None):
    if epoch == 1:
        raise KeyboardInterrupt
EpochCheckpoint.on_epoch_begin = stop_in_the_second_epoch
sys.exit(main(sys.argv[1:]))
"""


def mtl(*args, script=None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", script, *map(str, args)] if script else [sys.executable, "-m", "mtl", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def weights(path):
    return keras.models.load_model(path).get_weights()


def test_an_interrupted_training_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    straight = mtl(*TRAIN, "--runs-dir", tmp_path, "--name", "straight")
    assert straight.returncode == 0, straight.stderr

    interrupted = mtl(*TRAIN, "--runs-dir", tmp_path, "--name", "resumed", script=INTERRUPTED_AFTER_FIRST_EPOCH)
    assert interrupted.returncode == 130, interrupted.stderr
    assert not (tmp_path / "resumed" / "model.keras").exists()

    resumed = mtl(*TRAIN, "--runs-dir", tmp_path, "--name", "resumed")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming the unfinished run" in resumed.stdout and "Resuming after epoch 1" in resumed.stdout
    for expected, got in zip(weights(tmp_path / "straight" / "multitask_model.keras"),
                             weights(tmp_path / "resumed" / "multitask_model.keras")):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    summary = json.loads((tmp_path / "resumed" / "multitask_training.json").read_text())
    assert len(summary["history"]["loss"]) == 2  # the epoch before the interruption is remembered
    assert not (tmp_path / "resumed" / "backup").exists()
    # The seconds of the epoch before the interruption count too, in the stage and in the run.
    assert json.loads((tmp_path / "straight" / "multitask_training.json").read_text())["earlier_seconds"] == 0
    assert 0 < summary["earlier_seconds"] < summary["training_seconds"]
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics["training_seconds"] >= summary["training_seconds"]


def test_a_finished_run_is_not_resumed_and_another_config_is_refused(tmp_path, trained_run):
    run_dir, _ = trained_run
    again = mtl("train", "separate", "--epochs", "1", "--runs-dir", run_dir.parent, "--name", run_dir.name)
    assert again.returncode == 2 and "already exists" in again.stderr

    unfinished = tmp_path / "unfinished"
    (unfinished).mkdir()
    (unfinished / "config.json").write_text(json.dumps({"approach": "separate", "train": {"epochs": 3}}))
    other = mtl("train", "separate", "--epochs", "1", "--runs-dir", tmp_path, "--name", "unfinished")
    assert other.returncode == 2 and "another config" in other.stderr


def test_a_killed_comparison_keeps_its_finished_variants(tmp_path):
    command = [sys.executable, "-m", "mtl", "compare", "--variants", "separate,multitask_masked", "--epochs", "1",
               "--backbone", "lenet", "--runs-dir", str(tmp_path), "--name", "cmp"]
    finished = tmp_path / "cmp" / "separate" / "seed-0" / "metrics.json"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not finished.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert finished.exists(), "the first variant never finished"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    written = finished.stat().st_mtime_ns

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)

    assert again.returncode == 0, again.stderr
    assert "separate/seed-0: finished earlier, kept" in again.stdout
    assert finished.stat().st_mtime_ns == written
    rows = (tmp_path / "cmp" / "results.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["separate", "multitask_masked"]
