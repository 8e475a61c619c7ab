"""Turning any image file into the model's input: decoded, RGB, resized.

Every reader and `mtl predict` go through these functions, so an image is prepared the
same way in training, evaluation and prediction. Colour handling beyond "three channels"
(keeping colour or turning grey) is a layer of the model, see `mtl.models.build`.

JPEG and PNG (the bulk of every dataset) are decoded by TensorFlow inside tf.data; every other
format (GIF, BMP, WebP, TIFF, ...) by Pillow. Either way the size written in the file's header
is checked against `MAX_PIXELS` before any pixel is decoded, so a small file that claims to be
a huge picture (a decompression bomb) is refused instead of filling the memory.

One image file read outside tf.data (`read_pixels`: `mtl predict`, detected faces) gets the same
pixels without TensorFlow: its JPEGs are decoded by libjpeg-turbo with TensorFlow's settings
(simplejpeg, fast integer DCT), so that `mtl predict` can answer without loading TensorFlow.
TensorFlow is imported only by the functions that build graph ops (`decode`, `resize`).
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import simplejpeg
from PIL import Image, ImageOps

from mtl.errors import UserError

if TYPE_CHECKING:
    import tensorflow as tf

# Far above any face photo (a 24-megapixel camera frame passes), far below what would exhaust memory.
MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 200_000_000  # an uncompressed 40-megapixel RGB image is 120 MB
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
# Leading bytes of the formats a data folder may hold; WebP is RIFF....WEBP.
_SIGNATURES = (_JPEG, _PNG, b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
# The JPEG markers before the pixels (APP1 "Exif", APP14 "Adobe") sit in the first kilobytes.
_JPEG_MARKERS_BYTES = 65_536
_PILLOW_JPEG = r"\C*(Exif\x00\x00|Adobe)\C*"  # RE2: \C is any byte, where "." would need UTF-8
_PILLOW_JPEG_BYTES = re.compile(rb"Exif\x00\x00|Adobe")  # the same markers, for `_decode_file`


def regular_file_size(path) -> int | None:
    """The size of `path` if it is a regular file (a link to one counts), else None: nothing is opened.

    Opening a FIFO blocks until a writer comes, and `/dev/zero` never ends; neither is read.
    """
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def looks_like_image(path) -> bool:
    """True when the file starts like a JPEG, PNG, GIF, BMP, WebP or TIFF; zero-byte and text files do not."""
    size = regular_file_size(path)
    if size is None or size > MAX_FILE_BYTES:
        return False
    try:
        with open(path, "rb") as file:
            head = file.read(12)
    except OSError:
        return False
    return head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def list_images(folder) -> tuple[list[str], int]:
    """Image files in a folder (sorted, recursive; hidden files left out), and how many files were skipped
    as not images; a folder that cannot be read is a UserError, never taken for an empty one."""

    def unreadable(error: OSError):
        raise UserError(f"Folder '{error.filename}' cannot be read ({error.strerror}); "
                        "give this user read access to it, or move it elsewhere.")

    kept, skipped = [], 0
    # os.walk, not Path.rglob: rglob passes over a folder it may not read as if it were empty.
    found = (Path(top, name) for top, _, names in os.walk(folder, onerror=unreadable) for name in names)
    for path in sorted(p for p in found if p.is_file()):
        if path.name.startswith("."):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and looks_like_image(path):
            kept.append(str(path))
        else:
            skipped += 1
    return kept, skipped


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """uint8 [H, W, 3] from encoded bytes: grey is repeated, alpha is dropped (TF graph op).

    Fails (InvalidArgumentError) on bytes that are no image and on images over MAX_PIXELS.
    """
    import tensorflow as tf

    def with_tensorflow(pixels):
        limit = tf.constant(MAX_PIXELS, tf.int64)
        within = tf.debugging.assert_less_equal(pixels, limit, message="over the pixel limit")
        with tf.control_dependencies([within]):
            return tf.io.decode_image(encoded, channels=3, expand_animations=False)

    def jpeg():
        height_width = tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)
        return with_tensorflow(height_width[0] * height_width[1])

    def png():
        # The IHDR chunk, always first: width and height as big-endian 32-bit numbers at bytes 16-23.
        width_height = tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.int32, little_endian=False)
        width_height = tf.cast(width_height, tf.int64)
        return with_tensorflow(width_height[0] * width_height[1])

    def with_pillow():
        return tf.ensure_shape(tf.numpy_function(_pillow_rgb, [encoded], tf.uint8, stateful=False), (None, None, 3))

    # Pillow for the rest: TensorFlow reads the colour indices of a palette BMP as grey levels,
    # decodes every frame of a GIF (unbounded memory) and reads neither WebP nor TIFF; and for
    # JPEGs with an EXIF block (TensorFlow ignores the orientation: a phone's portrait would be
    # sideways) or Adobe's marker, which CMYK JPEGs carry (TensorFlow refuses them).
    head = tf.strings.substr(encoded, 0, _JPEG_MARKERS_BYTES)
    plain_jpeg = tf.logical_not(tf.strings.regex_full_match(head, _PILLOW_JPEG))
    is_jpeg = (tf.strings.substr(encoded, 0, 3) == _JPEG) & plain_jpeg
    # Too short for a header goes to Pillow, which refuses it: substr past the end would fail with
    # a message quoting the raw bytes, which TensorFlow cannot turn into a Python error.
    is_png = (tf.strings.substr(encoded, 0, 8) == _PNG) & (tf.strings.length(encoded) >= 24)
    return tf.case([(is_jpeg, jpeg), (is_png, png)], default=with_pillow)


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """uint8 [size, size, 3] from encoded bytes (TF graph op); see `decode` for what fails."""
    return resize(decode(encoded), image_size)


def _pillow_rgb(encoded: bytes) -> np.ndarray:
    """Pillow's decoding of any format it knows, first frame only, checked against MAX_PIXELS first."""
    try:
        # The bytes as given: a NumPy bytes array would cut the trailing zeros a WebP or BMP may end with.
        with Image.open(io.BytesIO(encoded)) as picture:
            return _rgb(picture)
    # Pillow documents that broken files may raise any exception; here each means "undecodable",
    # and a ValueError becomes the InvalidArgumentError that tf.data skips and `read_image` reports.
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"undecodable image: {error}") from None


def _rgb(picture: Image.Image) -> np.ndarray:
    """uint8 [H, W, 3] of an opened Pillow image whose size has not been checked yet."""
    width, height = picture.size
    if width * height > MAX_PIXELS:  # the header's size: nothing is decoded yet
        raise ValueError(f"{width}x{height} pixels is over the limit of {MAX_PIXELS}")
    picture = ImageOps.exif_transpose(picture)  # upright as the camera meant it
    if picture.mode.startswith("I;16"):
        # Pillow would clip 16-bit levels at 255 (white); scale them as TensorFlow does a 16-bit PNG.
        grey = (np.asarray(picture).astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(picture.convert("RGB"))


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize an [H, W, 3] image of any size to uint8 [size, size, 3]."""
    import tensorflow as tf

    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def over_pixel_limit(path) -> bool:
    """True when the size in the file's header is over MAX_PIXELS (read by Pillow; nothing is decoded)."""
    try:
        with Image.open(path) as picture:
            width, height = picture.size
    except Image.DecompressionBombError:  # Pillow's own limit, above ours
        return True
    except Exception:  # noqa: BLE001  no header Pillow can read: not an image at all, so not too large
        return False
    return width * height > MAX_PIXELS


def read_pixels(path) -> np.ndarray:
    """One image file at full size as uint8 [H, W, 3], decoded as a data folder's images are, or a UserError.

    Only a regular file under MAX_FILE_BYTES is read, and its header's size is checked before decoding.
    """
    size = regular_file_size(path)
    if size is None:
        shown = "does not exist" if not os.path.lexists(path) else "is not a regular file (a folder, pipe or device)"
        raise UserError(f"Image '{path}' {shown}; expected an image file.")
    if size > MAX_FILE_BYTES:
        raise UserError(f"Image '{path}' is {size} bytes, over the limit of {MAX_FILE_BYTES} for one image file.")
    if over_pixel_limit(path):
        raise UserError(f"Image '{path}' is larger than the limit of {MAX_PIXELS} pixels.")
    with open(path, "rb") as file:
        encoded = file.read()
    try:
        return _decode_file(encoded)
    except ValueError:
        raise UserError(f"'{path}' is not a readable image (expected JPEG, PNG or another image format).") from None


def _decode_file(encoded: bytes) -> np.ndarray:
    """The pixels `decode` gives for these bytes, without TensorFlow; ValueError when undecodable.

    A JPEG that `decode` gives TensorFlow goes to the same libjpeg-turbo with the same settings
    (fast integer DCT, fancy upsampling); everything else goes to Pillow, as `decode` sends it.
    """
    if encoded.startswith(_JPEG) and not _PILLOW_JPEG_BYTES.search(encoded[:_JPEG_MARKERS_BYTES]):
        try:
            return simplejpeg.decode_jpeg(encoded, colorspace="RGB", fastdct=True)
        except ValueError:
            pass  # a truncated or damaged JPEG, which TensorFlow refuses and Pillow may still read
    return _pillow_rgb(encoded)


def read_image(path, image_size: int) -> np.ndarray:
    """One image file as uint8 [size, size, 3]: `read_pixels`, resized as in training; or a UserError."""
    import tensorflow as tf

    return resize(tf.constant(read_pixels(path)), image_size).numpy()
