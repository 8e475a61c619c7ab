"""Pictures of an evaluation: confusion matrices and grids of test faces with their predictions.

They are plain uint8 RGB arrays, so the same picture goes to TensorBoard (write_images) and
to a PNG file beside the run's metrics (save_png).
"""

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from sklearn.metrics import ConfusionMatrixDisplay

CORRECT = (0, 150, 0)
WRONG = (220, 0, 0)
UNKNOWN = (150, 150, 150)
# TensorBoard draws an image at the width of its card, 335 px by default, however wide the
# image is. Two columns of faces at least 160 px wide, labelled in a 22 px font that fits
# "true: happy_female" under a face, come out at a 13 px font: readable, where eight columns
# in 12 px came out at 5 px. Three columns would shrink the text below 9 px.
GRID_COLUMNS = 2
GRID_FACES = 6
FACE_PIXELS = 160
FONT_PIXELS = 22


def confusion_matrix_image(
    matrix: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], title: str
) -> np.ndarray:
    """Draw a confusion matrix, rows = true class, columns = predicted class, counts in cells.

    Returns an RGB image, uint8 array of shape (H, W, 3); its size grows with the classes.
    """
    matrix = np.asarray(matrix)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {n} class names")
    # A Figure with its own Agg canvas, not pyplot: no global figure state, no backend switch
    # for the rest of the process, and the figure is freed with the last reference.
    size = 1.8 + 0.9 * n
    figure = Figure(figsize=(size + 0.6, size), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    integer = np.issubdtype(matrix.dtype, np.integer)
    ConfusionMatrixDisplay(matrix, display_labels=list(class_names)).plot(
        ax=axes,
        cmap="Blues",
        colorbar=False,
        values_format="d" if integer else ".2f",
        # From zero, so a matrix of small counts is not drawn as dark as a full one.
        im_kw={"vmin": 0, "vmax": max(matrix.max(), 1)},
        xticks_rotation=30,
    )
    for label in axes.get_xticklabels():
        label.set_horizontalalignment("right")  # rotated names end under their column
    axes.set_title(title)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def face_grid_image(
    images: np.ndarray,
    predicted: Sequence[str],
    true: Sequence[str] | None = None,
    columns: int = GRID_COLUMNS,
) -> np.ndarray:
    """Lay faces out in a grid, each with its predicted label underneath.

    `images` is uint8 (N, H, W, 3) (grey (N, H, W) or (N, H, W, 1) is accepted too). With
    `true` labels, a correct face gets a green border, a wrong one a red border and a red
    label with the true class under it; without, borders are grey. Faces narrower than
    FACE_PIXELS are enlarged by a whole factor so labels fit. Returns uint8 (H, W, 3).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    count, height, width = images.shape[:3]
    if count == 0:
        raise ValueError("no images to draw")
    if len(predicted) != count or (true is not None and len(true) != count):
        raise ValueError(f"{count} images but {len(predicted)} predicted / "
                         f"{'no' if true is None else len(true)} true labels")

    scale = max(1, math.ceil(FACE_PIXELS / width))
    face_w, face_h = width * scale, height * scale
    font = _font()
    line_h = font.getbbox("Ag")[3] + 3
    border, gap = 4, 4
    lines = 1 if true is None else 2
    cell_w = face_w + 2 * border
    cell_h = face_h + 2 * border + lines * line_h + 2
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)

    grid = Image.new("RGB", (columns * (cell_w + gap) + gap, rows * (cell_h + gap) + gap), "white")
    draw = ImageDraw.Draw(grid)
    for k in range(count):
        x = gap + (k % columns) * (cell_w + gap)
        y = gap + (k // columns) * (cell_h + gap)
        wrong = true is not None and predicted[k] != true[k]
        colour = UNKNOWN if true is None else (WRONG if wrong else CORRECT)
        draw.rectangle([x, y, x + cell_w - 1, y + face_h + 2 * border - 1], fill=colour)
        face = Image.fromarray(images[k]).resize((face_w, face_h), Image.Resampling.NEAREST)
        grid.paste(face, (x + border, y + border))
        text_y = y + face_h + 2 * border + 1
        draw.text((x + 1, text_y), _fit(draw, str(predicted[k]), font, cell_w - 2),
                  fill=WRONG if wrong else (0, 0, 0), font=font)
        if wrong:
            draw.text((x + 1, text_y + line_h), _fit(draw, f"true: {true[k]}", font, cell_w - 2),
                      fill=WRONG, font=font)
    return np.asarray(grid, dtype=np.uint8)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font: no font files needed on the machine."""
    try:
        return ImageFont.load_default(size=FONT_PIXELS)
    except (TypeError, ImportError, OSError):  # old Pillow, or Pillow without FreeType
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text`, shortened with ".." if it is wider than `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def write_images(
    logdir: str | Path, name: str, images: Sequence[np.ndarray], step: int = 0
) -> None:
    """Write `images` (uint8, (H, W, 3)) as one TensorBoard image summary `name` at `step`.

    All images go into one summary (the dashboard shows them under one card, with a
    sample slider); images of different sizes are padded with white to the largest.
    """
    if not images:
        raise ValueError("no images to write")
    images = [np.asarray(image) for image in images]
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    # tf.summary.image takes one (k, h, w, c) batch, so sizes must agree.
    batch = np.full((len(images), height, width, 3), 255, dtype=np.uint8)
    for k, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"image {k}: expected uint8 (H, W, 3), got {image.dtype} {image.shape}"
            )
        batch[k, : image.shape[0], : image.shape[1]] = image
    writer = tf.summary.create_file_writer(str(logdir))
    try:
        with writer.as_default():
            tf.summary.image(name, batch, step=step, max_outputs=len(images))
        writer.flush()
    finally:
        writer.close()


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Save a uint8 image array ((H, W), (H, W, 3) or (H, W, 4)) as a PNG file at `path`.

    Creates missing parent directories; returns the path written.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {array.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path
