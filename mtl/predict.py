"""`mtl predict`: every face in photographs (or face crops), classified for gender, emotion and four classes.

Inputs are image files and folders (read recursively). In each photograph the default face
detector finds the faces, each is framed by the crop rule of `mtl.faces`, and the crops of a
few images at a time are classified in one batch. An input that cannot be read is reported and
skipped; only when nothing at all could be read is it a UserError.
"""

import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mtl.models.build import load_inference_model
from mtl import faces, plugins
from mtl.data.images import looks_like_image, read_image
from mtl.data.sources import IMAGE_SUFFIXES
from mtl.errors import UserError
from mtl.runs import CONFIG_FILE, MODEL_FILE, require_run
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER

ANSWERS = (GENDER, EMOTION, FOUR)
IMAGES_PER_BATCH = 32
ANNOTATION_MIN_SIDE = 256  # small photos are drawn larger, so the labels stay legible


def bundled_model_path() -> Path:
    """Where a ready model ships inside the package (present only once one has been bundled)."""
    return Path(str(resources.files("mtl") / "pretrained" / MODEL_FILE))


def split_model_and_inputs(paths: list[str]) -> tuple[Path, list[Path]]:
    """(model file, inputs): the first path is a run directory when it looks like one, else the bundled model is used."""
    first, rest = Path(paths[0]), [Path(p) for p in paths[1:]]
    looks_like_run = (first / MODEL_FILE).is_file() or (first / CONFIG_FILE).is_file()
    # A missing or image-less folder followed by more paths was meant as a run directory: say what is wrong with it.
    meant_as_run = rest and first.suffix.lower() not in IMAGE_SUFFIXES and (
        not first.exists() or (first.is_dir() and not _images_in(first)))
    if looks_like_run or meant_as_run:
        return require_run(first) / MODEL_FILE, rest
    if bundled_model_path().is_file():
        return bundled_model_path(), [first, *rest]
    raise UserError(f"'{first}' is not a run directory and this installation has no bundled model, "
                    "so give a run directory (made by 'mtl train') before the images.")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES and looks_like_image(p))


@dataclass
class Item:
    """One input image, with where it came from (for names of annotated copies)."""

    path: Path
    relative: Path


def expand_inputs(paths: list[Path]) -> tuple[list[Item], list[str], bool]:
    """(images to read, one sentence per input that is unusable, whether any input was a folder)."""
    items, problems, any_folder = [], [], False
    for path in paths:
        if path.is_dir():
            any_folder = True
            found = _images_in(path)
            if not found:
                problems.append(f"Folder '{path}' holds no images (JPEG, PNG, GIF, BMP or WebP).")
            items += [Item(image, Path(path.resolve().name) / image.relative_to(path)) for image in found]
        elif path.exists():
            items.append(Item(path, Path(path.name)))
        else:
            problems.append(f"Image '{path}' does not exist.")
    return items, problems, any_folder


@dataclass
class ImageResult:
    """The faces of one image: a box (None: the whole image is the face) and the answers for each."""

    item: Item
    boxes: list = field(default_factory=list)
    answers: list = field(default_factory=list)
    photo: np.ndarray | None = None


def _answers(outputs: dict, index: int) -> dict:
    answers = {}
    for task in ANSWERS:
        probabilities = np.asarray(outputs[task][index])
        best = int(probabilities.argmax())
        answers[task] = {
            "label": CLASSES[task][best],
            "probability": float(probabilities[best]),
            "probabilities": {name: float(p) for name, p in zip(CLASSES[task], probabilities)},
        }
    return answers


def predict_images(model, items: list[Item], detector: str | None, keep_photos: bool = False,
                   on_problem=lambda message: None, on_progress=lambda done: None):
    """Yield an ImageResult per readable image; `detector=None` takes every image as one face crop."""
    size = model.input_shape[1]
    detect = faces.detector(detector) if detector else None
    for start in range(0, len(items), IMAGES_PER_BATCH):
        results, crops = [], []
        for done, item in enumerate(items[start:start + IMAGES_PER_BATCH], start=start + 1):
            on_progress(done)
            try:
                photo = faces.read_photo(item.path) if detect or keep_photos else None
                if detect:
                    boxes = detect(photo)
                    crops += [faces.crop_face(photo, box, size) for box in boxes]
                else:
                    boxes = [None]
                    crops.append(read_image(item.path, size))  # exactly as the training crops were read
            except UserError as error:
                on_problem(str(error))
                continue
            results.append(ImageResult(item, boxes, photo=photo if keep_photos else None))
        if crops:
            outputs = model.predict_on_batch(np.stack(crops).astype(np.float32))
            index = 0
            for result in results:
                result.answers = [_answers(outputs, index + k) for k in range(len(result.boxes))]
                index += len(result.boxes)
        yield from results


def describe(result: ImageResult) -> list[str]:
    """One line per face; one line saying so when the image has none."""
    if not result.boxes:
        return [f"{result.item.path}: no face found"]
    lines = []
    for number, (box, answers) in enumerate(zip(result.boxes, result.answers), start=1):
        where = "" if box is None else (
            f" face {number}/{len(result.boxes)} at x={box.x:.0f} y={box.y:.0f} w={box.w:.0f} h={box.h:.0f}")
        labels = ", ".join(f"{task} {answers[task]['label']} ({answers[task]['probability']:.2f})" for task in ANSWERS)
        lines.append(f"{result.item.path}{where}: {labels}")
    return lines


def json_lines(result: ImageResult) -> list[str]:
    """One JSON object per face (`face` numbered from 1); `"face": null` when the image has none."""
    if not result.boxes:
        return [json.dumps({"image": str(result.item.path), "faces": 0, "face": None})]
    return [
        json.dumps({"image": str(result.item.path), "faces": len(result.boxes), "face": number,
                    "box": None if box is None else box.as_dict(), **answers})
        for number, (box, answers) in enumerate(zip(result.boxes, result.answers), start=1)
    ]


def annotate(result: ImageResult) -> Image.Image:
    """The photo with each face's box and four-class label drawn on it."""
    picture = Image.fromarray(result.photo)
    scale = max(1.0, ANNOTATION_MIN_SIDE / min(picture.size))
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(picture)
    line = max(2, round(min(picture.size) / 150))
    if not result.boxes:
        draw.text((line, line), "no face found", fill="red")
    for box, answers in zip(result.boxes, result.answers):
        left, top, right, bottom = ((0, 0, picture.width - 1, picture.height - 1) if box is None else
                                    (box.x * scale, box.y * scale, (box.x + box.w) * scale, (box.y + box.h) * scale))
        draw.rectangle((left, top, right, bottom), outline="lime", width=line)
        label = f"{answers[FOUR]['label']} {answers[FOUR]['probability']:.2f}"
        text_box = draw.textbbox((left, top), label)
        height = text_box[3] - text_box[1] + 2 * line
        y = top - height if top >= height else top  # above the face, inside when there is no room
        draw.rectangle((left, y, left + text_box[2] - text_box[0] + 2 * line, y + height), fill="lime")
        draw.text((left + line, y + line), label, fill="black")
    return picture


def predict_command(paths: list[str], as_json: bool = False, annotate_dir: str | None = None,
                    detector: str | None = faces.DEFAULT_DETECTOR, out=None, err=None) -> None:
    """`mtl predict`: print every face's answers, optionally write annotated copies; UserError if nothing was read."""
    out, err = out or sys.stdout, err or sys.stderr
    model_file, inputs = split_model_and_inputs(paths)
    plugins.load_for_run(model_file.parent)  # its model may hold a plug-in's layers
    if not inputs:
        raise UserError(f"No images given after the run directory '{paths[0]}'; expected image files or folders.")
    items, problems, any_folder = expand_inputs(inputs)
    if not items:
        raise UserError(problems[0] if len(problems) == 1 else
                        f"None of the {len(problems)} inputs holds an image ({problems[0].rstrip('.')}).")
    for problem in problems:
        print(f"mtl: skipped: {problem}", file=err)
    if annotate_dir is not None and Path(annotate_dir).exists() and not Path(annotate_dir).is_dir():
        raise UserError(f"--annotate '{annotate_dir}' is a file; expected a folder to write annotated images to.")
    model = load_inference_model(model_file)
    unreadable = []

    def report_problem(message):
        unreadable.append(message)
        if len(items) > 1:
            print(f"mtl: skipped: {message}", file=err)

    def show_progress(done):
        if any_folder and err.isatty():
            print(f"\rpredicting: {done}/{len(items)} images", end="\n" if done == len(items) else "", file=err)

    read = 0
    for result in predict_images(model, items, detector, keep_photos=annotate_dir is not None,
                                 on_problem=report_problem, on_progress=show_progress):
        read += 1
        for line in (json_lines if as_json else describe)(result):
            print(line, file=out, flush=True)
        if annotate_dir is not None:
            target = Path(annotate_dir) / result.item.relative
            if target.suffix.lower() not in IMAGE_SUFFIXES:
                target = target.with_name(target.name + ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            annotate(result).save(target)
    if not read:
        raise UserError(unreadable[0] if len(unreadable) == 1 else
                        f"None of the {len(unreadable)} images could be read ({unreadable[0].rstrip('.')}).")
