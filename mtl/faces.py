"""Faces in photographs: face detectors chosen by name, and the one crop rule that frames a face for a model.

A detector is a function `detect(image) -> list[Box]` taking a uint8 RGB [H, W, 3] image;
one factory per package makes it, registered by name in `DETECTORS` (the package is imported
only when its detector is asked for). Every face found in a photograph reaches a model through
`crop_face`, so a detected face is framed like the tight training crops: a square of side
`CROP_MARGIN` times the box's larger side around the box's centre, resized as every image is
(`mtl.data.images.resize`).

Detection and the crop rule need no TensorFlow (`mtl predict` through LiteRT loads none); the
functions that resize or build a dataset import it themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from mtl.builtin_names import DEFAULT_DETECTOR
from mtl.data.images import read_pixels, resize
from mtl.errors import UserError
from mtl.registry import Registry

if TYPE_CHECKING:
    from mtl.data.sources import ArraySource, ImageSource

# Side of the square crop over the larger side of the detector's box: the mean of the training
# crops' medians (0.83 for the gender faces, 1.01 for FER2013), whose centres lie within 0.03 box
# heights of the box's: experiments/measure_crops.py, experiments/results/crops.json.
CROP_MARGIN = 0.92

# Detectors miss faces under about 20 px and slow down on large images: photos are scaled so
# their shorter side is at least MIN_SIDE and their longer side at most MAX_SIDE before detection.
MIN_SIDE = 160
MAX_SIDE = 960


@dataclass(frozen=True)
class Box:
    """A face in image pixels: top-left corner, width, height, and the detector's confidence (0-1)."""

    x: float
    y: float
    w: float
    h: float
    score: float

    def as_dict(self) -> dict:
        return {"x": round(self.x, 1), "y": round(self.y, 1), "w": round(self.w, 1), "h": round(self.h, 1),
                "score": round(self.score, 3)}


DETECTORS = Registry("face detector")
# Decorator: make a detector factory (called once, returns `detect(image) -> list[Box]`) selectable by name.
register_detector = DETECTORS.register


@register_detector("yuface")
def yuface_detector(min_score: float = 0.5):
    """YuNet (libfacedetection) compiled into the `yuface` wheel: fast, no TensorFlow."""
    from yuface import yuface as compiled

    def detect(image):
        # The compiled function takes BGR; its rows are score (0-100), x, y, w, h, landmarks as int16.
        rows = compiled.detect(np.ascontiguousarray(image[..., ::-1]))
        return [Box(float(x), float(y), float(w), float(h), float(score) / 100) for score, x, y, w, h in rows[:, :5]
                if score / 100 >= min_score]

    return detect


@register_detector("mtcnn")
def mtcnn_detector(min_score: float = 0.5):
    """MTCNN (the `mtcnn` package, TensorFlow): slower; kept as the measured alternative."""
    from mtl.quiet import start_tensorflow

    start_tensorflow()  # MTCNN runs on TensorFlow: started here without its start-up noise
    from mtcnn import MTCNN

    model = MTCNN()

    def detect(image):
        faces = model.detect_faces(image)
        return [Box(*map(float, face["box"]), float(face["confidence"])) for face in faces
                if face["confidence"] >= min_score]

    return detect


@cache
def detector(name: str = DEFAULT_DETECTOR):
    """The named detector wrapped to work at a size it handles well, boxes in the image's own pixels."""
    factory = DETECTORS.get(name)
    try:
        detect = factory()
    except ImportError as error:
        raise UserError(f"Face detector '{name}' needs a package that is not installed ({error.name}); "
                        f"install it with pip.") from None

    def detect_at_working_size(image: np.ndarray) -> list[Box]:
        height, width = image.shape[:2]
        scale = max(MIN_SIDE / min(height, width), 1.0)
        scale = min(scale, MAX_SIDE / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size != (width, height):
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        sx, sy = size[0] / width, size[1] / height  # per axis: rounding the size changes each a little
        boxes = [Box(b.x / sx, b.y / sy, b.w / sx, b.h / sy, b.score) for b in detect(image)]
        return sorted(boxes, key=lambda box: (box.x, box.y))

    return detect_at_working_size


def crop_square(image: np.ndarray, box: Box, margin: float = CROP_MARGIN) -> np.ndarray:
    """The square region of `image` framing `box` by the crop rule; parts outside the image repeat its edge."""
    side = max(box.w, box.h) * margin
    centre_x = box.x + box.w / 2
    centre_y = box.y + box.h / 2
    left, top = int(round(centre_x - side / 2)), int(round(centre_y - side / 2))
    side = max(int(round(side)), 1)
    height, width = image.shape[:2]
    rows = np.clip(np.arange(top, top + side), 0, height - 1)
    columns = np.clip(np.arange(left, left + side), 0, width - 1)
    return image[rows][:, columns]


def crop_face(image: np.ndarray, box: Box, image_size: int, margin: float = CROP_MARGIN) -> np.ndarray:
    """The model's input for one detected face: uint8 [size, size, 3] by the crop rule."""
    import tensorflow as tf

    return resize(tf.constant(crop_square(image, box, margin)), image_size).numpy()


def read_photo(path) -> np.ndarray:
    """A photograph at full resolution as uint8 RGB [H, W, 3], decoded as training decodes its images, or a UserError."""
    return read_pixels(path)


def _photos(source: ArraySource | ImageSource):
    """(index, full-resolution RGB photo) of each readable photo of a test set, in the source's order."""
    from mtl.data.sources import ArraySource

    if isinstance(source, ArraySource):
        yield from enumerate(source.photos())
        return
    for index, path in enumerate(source.paths):
        try:
            yield index, read_photo(path)
        except UserError:
            continue  # dropped, as the crop-based reading of the same set drops it


def detected_faces(source: ArraySource | ImageSource, image_size: int, detector_name: str = DEFAULT_DETECTOR,
                   margin: float = CROP_MARGIN):
    """(examples like `source.dataset`, face-found rate): each photo's most confident face by the crop rule.

    A photo where no face is found is classified whole, so every photo still counts in the accuracy.
    """
    import tensorflow as tf

    detect = detector(detector_name)
    crops, kept, found = [], [], 0
    for index, photo in _photos(source):
        boxes = detect(photo)
        if boxes:
            found += 1
            crops.append(crop_face(photo, max(boxes, key=lambda box: box.score), image_size, margin))
        else:
            crops.append(resize(tf.constant(photo), image_size).numpy())
        kept.append(index)
    labels = {task: values[kept] for task, values in source.labels.items()}
    examples = tf.data.Dataset.from_tensor_slices((np.stack(crops), labels))
    return examples, found / max(len(kept), 1)
