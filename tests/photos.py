"""Helpers for the tests of faces in photographs: an untrained mtl model saved as a run, and photos
composed from the bundled sample faces pasted onto a noisy background at known places.

The sample faces are tight crops of about 80x105 px; they are scaled to FACE_HEIGHT px before
pasting, the size of a face in an ordinary photo, well above the smallest face the detector finds.
"""

from pathlib import Path

import keras
import numpy as np
from PIL import Image

from conftest import SAMPLE
from mtl.config import DataConfig, ModelConfig
from mtl.models.build import build_network, inference_model

FACE_HEIGHT = 150
FEMALE_FACE = sorted((SAMPLE / "gender" / "Validation" / "female").iterdir())[0]
MALE_FACE = sorted((SAMPLE / "gender" / "Validation" / "male").iterdir())[0]


def save_untrained_run(directory: Path, seed: int = 3) -> Path:
    """A run directory holding only an untrained LeNet inference model (model.keras): enough to predict."""
    keras.utils.set_random_seed(seed)
    data = DataConfig()
    network = build_network(ModelConfig(backbone="lenet"), data, {"gender": 2, "emotion": 2}, "network")
    directory.mkdir(parents=True, exist_ok=True)
    inference_model([network], data).save(directory / "model.keras")
    return directory


def scaled_face(path: Path, height: int = FACE_HEIGHT) -> Image.Image:
    with Image.open(path) as face:
        face = face.convert("RGB")
        return face.resize((round(face.width * height / face.height), height), Image.Resampling.BICUBIC)


def compose_photo(path: Path, faces=(FEMALE_FACE, MALE_FACE), places=((60, 80), (300, 90)),
                  size=(480, 320), seed: int = 0) -> list[tuple[int, int, int, int]]:
    """Write a photo of the faces pasted at `places` (top-left corners); returns each face's (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    width, height = size
    photo = Image.fromarray(rng.normal(128, 20, (height, width, 3)).clip(0, 255).astype(np.uint8))
    boxes = []
    for face_path, (x, y) in zip(faces, places):
        face = scaled_face(face_path)
        photo.paste(face, (x, y))
        boxes.append((x, y, face.width, face.height))
    path.parent.mkdir(parents=True, exist_ok=True)
    photo.save(path)
    return boxes


def write_background(path: Path, size=(300, 200), seed: int = 1) -> Path:
    """A photo of noise only: no face in it."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.normal(128, 20, (size[1], size[0], 3)).clip(0, 255).astype(np.uint8)).save(path)
    return path


def overlap(box, other) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = box
    bx, by, bw, bh = other
    width = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    height = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    intersection = width * height
    return intersection / (aw * ah + bw * bh - intersection)
