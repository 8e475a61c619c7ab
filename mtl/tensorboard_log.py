"""What runs leave in TensorBoard (HParams rows, scalars, pictures), and reading rows back.

Layout this module expects (one TensorBoard --logdir per comparison):

    root_logdir/                 <- write_hparams_config(): the HParams columns
        run_a/                   <- write_hparams(): one HParams row + its metric scalars
        run_b/
        ...

Metric values are written as ordinary scalars in the run directory itself, so an HParams
metric named "gender/accuracy" is the scalar tag "gender/accuracy" of that run.
"""

import json
import math
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from tensorboard.plugins.hparams import api as hp

HParamValue = str | float | int | bool

# Every session status the plugin knows. write_hparams() writes no "session end" record, so
# our runs have STATUS_UNKNOWN; a request that leaves it out gets no rows back at all.
_ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
# The plugin slices the result with [startIndex : startIndex + sliceSize]; the proto default
# of 0 would return nothing, so ask for more rows than any experiment here will have.
_SLICE_SIZE = 1_000_000

_CORRECT = (0, 150, 0)
_WRONG = (220, 0, 0)
_UNKNOWN = (150, 150, 150)


# ---------------------------------------------------------------- HParams -------------------


def write_hparams(
    run_logdir: str | Path,
    hparams: Mapping[str, HParamValue],
    metrics: Mapping[str, float],
    step: int = 0,
    *,
    trial_id: str | None = None,
) -> None:
    """Record one run as one row of the HParams dashboard.

    Writes, into event files under `run_logdir`, the run's HParams session summary with
    `hparams`, and one scalar per entry of `metrics` under exactly that tag at `step`.
    The HParams plugin takes each metric's last scalar (highest step) as the row's value.
    Scalars are float32 (TensorBoard's scalar format), so values read back are rounded to
    float32; ints and floats in `hparams` are both read back as floats.

    `trial_id` names the row's session group; runs with the same trial id are merged into
    one row with averaged metrics. It defaults to the absolute path of `run_logdir`, so
    every run directory is its own row even when two runs share all their hparams.
    """
    run_logdir = Path(run_logdir)
    # The plugin's own default trial id is a hash of the hparam values, which would
    # silently average e.g. two seeds of the same configuration into one row.
    group = trial_id if trial_id is not None else str(run_logdir.resolve())
    writer = tf.summary.create_file_writer(str(run_logdir))
    try:
        with writer.as_default():
            hp.hparams(dict(hparams), trial_id=group)
            for tag, value in metrics.items():
                tf.summary.scalar(tag, float(value), step=step)
        writer.flush()
    finally:
        writer.close()


def write_hparams_config(
    root_logdir: str | Path,
    hparam_names_and_values: Mapping[str, Sequence[HParamValue]],
    metric_names: Mapping[str, str],
) -> None:
    """Declare the HParams dashboard's columns for all runs under `root_logdir`.

    `hparam_names_and_values` maps each hparam to the values it may take (an empty list:
    any value); `metric_names` maps each metric tag, as given to write_hparams(), to the
    name the dashboard shows. Once this is written the dashboard shows exactly these
    columns: hparams or metrics of a run that are not listed here are not shown.
    """
    columns = [
        hp.HParam(name, hp.Discrete(_same_type(name, values))) if values else hp.HParam(name)
        for name, values in hparam_names_and_values.items()
    ]
    metrics = [hp.Metric(tag, display_name=display) for tag, display in metric_names.items()]
    writer = tf.summary.create_file_writer(str(root_logdir))
    try:
        with writer.as_default():
            hp.hparams_config(hparams=columns, metrics=metrics)
        writer.flush()
    finally:
        writer.close()


def _same_type(name: str, values: Sequence[HParamValue]) -> list[HParamValue]:
    """The values as one Python type, as hp.Discrete requires; ints among floats become floats."""
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    is_number = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in values]
    if all(is_number) and any(isinstance(v, float) for v in values):
        return [float(v) for v in values]
    if len({type(v) for v in values}) > 1:
        raise ValueError(f"hparam {name!r}: values of mixed types {values!r}")
    return values


def read_hparams_from_server(url: str, timeout: float = 30.0) -> list[dict]:
    """Read every run's HParams row back from a running TensorBoard at `url`.

    Asks the HParams plugin (POST <url>/data/plugin/hparams/session_groups) for all session
    groups, whatever their status, and returns one dict per run (session), sorted by run:
        {"run": run name relative to the logdir, "group": its trial id,
         "hparams": {name: value}, "metrics": {tag: last value}}
    A metric logged in a sub-directory ("group" of hp.Metric) is keyed "<group>/<tag>".
    Numbers come back as floats. Raises urllib.error.URLError if the server does not answer
    and urllib.error.HTTPError if the plugin rejects the request.
    """
    request = {
        "experimentName": "",
        "allowedStatuses": _ALL_STATUSES,
        # No colParams: the plugin then returns every hparam and every metric it knows.
        "colParams": [],
        "startIndex": 0,
        "sliceSize": _SLICE_SIZE,
    }
    response = _post_json(url, "session_groups", request, timeout)
    rows = []
    for group in response.get("sessionGroups", []):
        for session in group.get("sessions", []):
            rows.append(
                {
                    "run": session["name"],
                    "group": group["name"],
                    "hparams": dict(group.get("hparams", {})),
                    "metrics": {
                        _metric_key(m["name"]): m["value"] for m in session.get("metricValues", [])
                    },
                }
            )
    return sorted(rows, key=lambda row: row["run"])


def read_experiment_from_server(url: str, timeout: float = 30.0) -> dict:
    """Read the HParams dashboard's columns from a running TensorBoard at `url`.

    POSTs to <url>/data/plugin/hparams/experiment and returns
        {"hparams": {name: list of allowed values, or None if any value},
         "metrics": {tag (or "<group>/<tag>"): display name}}.
    With a write_hparams_config() record these are its columns; without one, the plugin
    derives them from the runs (and then lists every scalar of the runs as a metric).
    """
    response = _post_json(url, "experiment", {"experimentName": ""}, timeout)
    hparams = {}
    for info in response.get("hparamInfos", []):
        discrete = info.get("domainDiscrete")
        hparams[info["name"]] = list(discrete) if discrete is not None else None
    metrics = {
        _metric_key(info["name"]): info.get("displayName", "")
        for info in response.get("metricInfos", [])
    }
    return {"hparams": hparams, "metrics": metrics}


def _post_json(url: str, route: str, body: dict, timeout: float) -> dict:
    """POST `body` as JSON to the HParams plugin's `route` and return the decoded JSON answer."""
    # The plugin parses the raw POST body as the request proto in JSON form.
    request = urllib.request.Request(
        f"{url.rstrip('/')}/data/plugin/hparams/{route}",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read().decode("utf-8"))


def _metric_key(name: Mapping[str, str]) -> str:
    group, tag = name.get("group", ""), name["tag"]
    return f"{group}/{tag}" if group else tag


# ---------------------------------------------------------------- images --------------------


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
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
    threshold = matrix.max() / 2
    integer = np.issubdtype(matrix.dtype, np.integer)
    for i in range(n):
        for j in range(n):
            colour = "white" if matrix[i, j] > threshold else "black"  # readable on dark blue
            count = f"{int(matrix[i, j])}" if integer else f"{matrix[i, j]:.2f}"
            axes.text(j, i, count, ha="center", va="center", color=colour)
    axes.set_xticks(range(n), labels=class_names, rotation=30, ha="right")
    axes.set_yticks(range(n), labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def face_grid_image(
    images: np.ndarray,
    predicted: Sequence[str],
    true: Sequence[str] | None = None,
    columns: int = 8,
) -> np.ndarray:
    """Lay faces out in a grid, each with its predicted label underneath.

    `images` is uint8 (N, H, W, 3) (grey (N, H, W) or (N, H, W, 1) is accepted too). With
    `true` labels, a correct face gets a green border, a wrong one a red border and a red
    label with the true class under it; without, borders are grey. Faces narrower than
    96 pixels are enlarged by a whole factor so labels fit. Returns uint8 (H, W, 3).
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

    scale = max(1, math.ceil(96 / width))
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
        colour = _UNKNOWN if true is None else (_WRONG if wrong else _CORRECT)
        draw.rectangle([x, y, x + cell_w - 1, y + face_h + 2 * border - 1], fill=colour)
        face = Image.fromarray(images[k]).resize((face_w, face_h), Image.Resampling.NEAREST)
        grid.paste(face, (x + border, y + border))
        text_y = y + face_h + 2 * border + 1
        draw.text((x + 1, text_y), _fit(draw, str(predicted[k]), font, cell_w - 2),
                  fill=_WRONG if wrong else (0, 0, 0), font=font)
        if wrong:
            draw.text((x + 1, text_y + line_h), _fit(draw, f"true: {true[k]}", font, cell_w - 2),
                      fill=_WRONG, font=font)
    return np.asarray(grid, dtype=np.uint8)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font: no font files needed on the machine."""
    try:
        return ImageFont.load_default(size=12)
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
