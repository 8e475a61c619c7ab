"""A model exported to TFLite (`mtl export --format tflite`), answered by LiteRT without TensorFlow.

Importing TensorFlow takes most of the ten seconds a one-photo `mtl predict` would otherwise
take on a small CPU; LiteRT (`ai-edge-litert`) loads in a fraction of a second. The export's
signature `SIGNATURE` takes uint8 crops of any size and resizes them inside as mtl's pipeline
does, so a `LiteModel` is given the crops exactly as they were cut from the photo.

A TFLite file describes itself in a JSON contract beside it (`sidecar`), which records the
SHA-256 of the Keras file it was exported from: `is_export_of` tells whether it is still the
same model, so that a stale export never answers in place of the model it was made from.
"""

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

from mtl.quiet import filtered_stderr
from mtl.tasks import EMOTION, FOUR, GENDER

SIGNATURE = "serve"
METADATA_NAME = "mtl_contract"


def available() -> bool:
    """Whether LiteRT is installed (`ai-edge-litert`; it has no wheel for every platform TensorFlow has)."""
    return importlib.util.find_spec("ai_edge_litert") is not None


def sidecar(output: Path) -> Path:
    """The JSON contract written beside a TFLite file: `model.tflite` -> `model.tflite.json`."""
    return output.with_name(output.name + ".json")


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def is_export_of(lite_file: Path, keras_file: Path) -> bool:
    """True when `lite_file`'s contract says it was exported from the very bytes of `keras_file`."""
    try:
        described = json.loads(sidecar(lite_file).read_text())
    except (OSError, ValueError):
        return False
    return described.get("exported_from", {}).get("sha256") == file_digest(keras_file)


class LiteModel:
    """Callable like the Keras model in `mtl.predict`: uint8 crops of any size -> each task's probabilities."""

    runtime = "LiteRT"

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        # LiteRT says "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr: not a problem.
        with filtered_stderr():
            interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
            self.serve = interpreter.get_signature_runner(SIGNATURE)
            self.serve(images=np.zeros((1, 8, 8, 3), np.uint8))  # where the delegate is made

    def __call__(self, crops: list[np.ndarray]) -> dict:
        # One call per crop: a batch holds crops of one size, and the export resizes inside.
        answers = [self.serve(images=np.ascontiguousarray(crop[None])) for crop in crops]
        return {task: np.concatenate([answer[task] for answer in answers]) for task in (GENDER, EMOTION, FOUR)}
