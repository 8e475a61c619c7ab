"""Turning any image file into the model's input: decoded, RGB, resized.

Every reader and `mtl predict` go through these functions, so an image is prepared the
same way in training, evaluation and prediction. Colour handling beyond "three channels"
(keeping colour or turning grey) is a layer of the model, see `mtl.models.build`.
"""

import io

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from mtl.errors import UserError

# Leading bytes of the formats TensorFlow decodes (JPEG, PNG, GIF, BMP).
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def looks_like_image(path) -> bool:
    """True when the file starts like a JPEG, PNG, GIF or BMP; zero-byte and text files do not."""
    try:
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError:
        return False
    return any(head.startswith(signature) for signature in _SIGNATURES)


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [size, size, 3] from encoded bytes: grey is repeated, alpha is dropped (TF graph op)."""

    def with_tensorflow():
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)

    def with_pillow():
        return tf.ensure_shape(tf.numpy_function(_pillow_rgb, [encoded], tf.uint8, stateful=False), (None, None, 3))

    # TensorFlow reads the colour indices of a palette BMP as grey levels; Pillow applies the palette.
    is_bmp = tf.strings.substr(encoded, 0, 2) == b"BM"
    return resize(tf.cond(is_bmp, with_pillow, with_tensorflow), image_size)


def _pillow_rgb(encoded) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(np.asarray(encoded).item())) as picture:
            return np.asarray(picture.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"undecodable image: {error}") from None  # InvalidArgumentError inside tf.data


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize an [H, W, 3] image of any size to uint8 [size, size, 3]."""
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def read_image(path, image_size: int) -> np.ndarray:
    """One image file as uint8 [size, size, 3]; any format Pillow reads, or a UserError."""
    try:
        encoded = tf.io.read_file(str(path))
    except (tf.errors.NotFoundError, tf.errors.FailedPreconditionError):
        raise UserError(f"Image '{path}' does not exist or is not a file.") from None
    if looks_like_image(path):
        try:
            return decode_and_resize(encoded, image_size).numpy()
        except (tf.errors.InvalidArgumentError, ValueError):  # ValueError: Pillow's BMP decode, run eagerly
            pass  # truncated or odd variant: Pillow is more forgiving, and says clearly if not.
    try:
        with Image.open(path) as picture:
            picture.load()
            rgb = np.asarray(picture.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError):
        raise UserError(f"'{path}' is not a readable image (expected JPEG, PNG or another image format).") from None
    return resize(tf.constant(rgb), image_size).numpy()
