"""TensorFlow starts without its native start-up noise on stderr, and every other line of stderr is kept."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtl.predict import which_model
from mtl.quiet import is_noise

REPO = Path(__file__).resolve().parents[1]
PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
NO_DRIVER = ("I0000 00:00:1796119686.690675    4162 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
             "GPU will not be used.")
ONEDNN = ("I0000 00:00:1796575281.336058    7678 port.cc:153] oneDNN custom operations are on. You may see slightly "
          "different numerical results due to floating-point round-off errors from different computation orders. "
          "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.")
CUINIT = ("E0000 00:00:1796119691.624699    4162 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
          "Failed call to cuInit: UNKNOWN ERROR (303)")


def test_the_start_up_lines_of_a_machine_without_a_gpu_are_noise():
    assert is_noise(PREAMBLE, no_driver_seen=False)
    assert is_noise(NO_DRIVER, no_driver_seen=False)
    assert is_noise(CUINIT, no_driver_seen=True)
    assert is_noise(ONEDNN, no_driver_seen=False)  # a CPU with AVX-512 VNNI or BF16
    assert is_noise("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", no_driver_seen=False)  # LiteRT


def test_a_cuinit_failure_where_a_driver_exists_is_a_real_error_and_shown():
    assert not is_noise(CUINIT, no_driver_seen=False)


@pytest.mark.parametrize("line", [
    "E0000 00:00:1796119691.624699    4162 cuda_executor.cc:1] out of memory",
    "Traceback (most recent call last):",
    "mtl: error: Image 'x.jpg' does not exist.",
])
def test_other_lines_are_kept(line):
    assert not is_noise(line, no_driver_seen=True)


@pytest.mark.slow
def test_a_prediction_in_a_fresh_process_prints_no_tensorflow_start_up_noise():
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    result = subprocess.run(
        [sys.executable, "-m", "mtl.cli", "predict", "--runtime", "keras", "experiments/example/photo.jpg"], cwd=REPO,
        capture_output=True, text=True, timeout=180, env={**environment, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [which_model(REPO / "mtl" / "pretrained", bundled=True)]
