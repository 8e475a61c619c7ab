"""Prediction on image files with a trained run: labels and probabilities for every question."""

from pathlib import Path

import keras
import numpy as np

from mtl.config import load_config
from mtl.data.images import read_image
from mtl.runs import CONFIG_FILE, MODEL_FILE, require_run
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER


def predict_files(run_dir: Path, paths: list[str]) -> list[dict]:
    """One dict per image: for gender, emotion and four-class, the label, its probability and all probabilities."""
    run_dir = require_run(run_dir)
    config = load_config(run_dir / CONFIG_FILE)
    images = np.stack([read_image(path, config.data.image_size) for path in paths]).astype(np.float32)
    model = keras.models.load_model(run_dir / MODEL_FILE)
    outputs = {task: np.asarray(values) for task, values in model.predict_on_batch(images).items()}
    results = []
    for index, path in enumerate(paths):
        result = {"image": str(path)}
        for task in (GENDER, EMOTION, FOUR):
            probabilities = outputs[task][index]
            best = int(probabilities.argmax())
            result[task] = {
                "label": CLASSES[task][best],
                "probability": float(probabilities[best]),
                "probabilities": {name: float(p) for name, p in zip(CLASSES[task], probabilities)},
            }
        results.append(result)
    return results


def describe(result: dict) -> str:
    parts = [f"{task} {result[task]['label']} ({result[task]['probability']:.2f})" for task in (GENDER, EMOTION, FOUR)]
    return f"{result['image']}: " + ", ".join(parts)
