"""Run directories: one per trained approach, never overwritten, with the config saved first."""

import re
import time
from pathlib import Path

from mtl.config import ExperimentConfig
from mtl.errors import UserError

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"


def default_run_name(config: ExperimentConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config.approach}-{config.model.backbone}"


def create_run(directory: Path, config: ExperimentConfig) -> Path:
    """Make a new run directory holding the resolved config; an existing non-empty one is an error."""
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise UserError(f"Run directory '{directory}' already exists and is not empty; choose another --name.")
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory / CONFIG_FILE)
    return directory


def require_run(directory: Path) -> Path:
    """An existing run directory with a trained model, or a UserError saying what is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"Run directory '{directory}' does not exist.")
    if not (directory / MODEL_FILE).is_file():
        raise UserError(f"Run directory '{directory}' holds no {MODEL_FILE}; train it first with 'mtl train'.")
    return directory


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
