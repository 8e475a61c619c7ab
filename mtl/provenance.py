"""Where a result came from: the code's commit, the library versions and the machine.

Written into every metrics.json and comparison table, so a number can be traced to what made it
without any path of the machine that made it.
"""

import os
import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

PACKAGES = ("tensorflow", "keras", "keras-tuner", "numpy", "scikit-learn")


def _git(*args: str) -> str | None:
    repository = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", *args], cwd=repository, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    import tensorflow as tf

    return [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in tf.config.list_physical_devices("GPU")]


@cache
def provenance() -> dict:
    """Commit (and whether the tree had uncommitted changes), Python and library versions, CPU and GPUs."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "commit": commit,
        "dirty": bool(status) if commit else None,
        "python": platform.python_version(),
        **{package: _version(package) for package in PACKAGES},
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "gpus": _gpus(),
    }
