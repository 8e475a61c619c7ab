"""Prediction: every face in photographs (or face crops), classified for gender, emotion and four classes.

`mtl.load(run_dir=None)` returns a `Predictor` holding the bundled model or a run's; its
`predict(images)` takes image paths, folders, PIL images or uint8 numpy arrays and returns plain
`ImageResult`s (faces with a box and three `Answer`s). `mtl predict` (`predict_command`) is that
same predictor with printing, annotated copies and one sentence for every input that cannot be used.

In each photograph the face detector finds the faces, each is framed by the crop rule of
`mtl.faces`, and the crops of each image are classified together. An image that
cannot be read is reported and skipped; only when nothing at all could be read is it a UserError.

A model answers through one of two runtimes (`RUNTIMES`). Keras loads TensorFlow, which takes
most of a one-photo command's time on a small CPU. LiteRT answers with the model's TFLite export
(`mtl.lite`) in a fraction of that, when the export lies beside the model (the bundled one ships
with it) and was made from that very file. Both resize a crop with the same filter and are given
the same decoded pixels (`mtl.data.images.read_pixels`), so they give the same answers up to
float rounding (tests/test_lite.py compares them).
"""

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mtl import faces, lite, plugins
from mtl.builtin_names import RUNTIMES
from mtl.data.images import IMAGE_SUFFIXES, list_images, read_pixels
from mtl.errors import UserError
from mtl.quiet import start_tensorflow
from mtl.runs import (CONFIG_FILE, LITE_MODEL_FILE, METRICS_FILE, MODEL_FILE, REFIT_FILE, TRAINED_HEAD, atomic_path,
                      bundled_model_path, require_run)
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER

ANSWERS = (GENDER, EMOTION, FOUR)
ANNOTATION_MIN_SIDE = 256  # small photos are drawn larger, so the labels stay legible
BUNDLED = "bundled"  # the "model" of every JSON line answered by the bundled model
RUNS_LISTED = 5  # a refused comparison root names this many of its runs


# ---------------------------------------------------------------- what a prediction is


@dataclass(frozen=True)
class Answer:
    """One task's answer for one face: the likeliest class, its probability and every class's."""

    label: str
    probability: float
    probabilities: dict


@dataclass(frozen=True)
class Face:
    """One face: where it is (None: the whole image was taken as the face) and the three answers."""

    box: faces.Box | None
    gender: Answer
    emotion: Answer
    four: Answer

    def answer(self, task: str) -> Answer:
        return getattr(self, task)


@dataclass
class ImageResult:
    """The faces of one image; `error` is the sentence saying why an image could not be read (then no faces)."""

    source: str  # the path as given, or "image N" for an image passed in memory
    faces: list = field(default_factory=list)
    error: str | None = None
    photo: np.ndarray | None = field(default=None, repr=False, compare=False)  # kept only for annotating


@dataclass(frozen=True)
class Item:
    """One input image: a file, or pixels in memory; `relative` names its annotated copy."""

    source: str
    path: Path | None = None
    pixels: object = None  # a PIL image or a numpy array
    relative: Path | None = None


def _answers(outputs: dict, index: int) -> dict:
    answers = {}
    for task in ANSWERS:
        probabilities = np.asarray(outputs[task][index])
        best = int(probabilities.argmax())
        answers[task] = Answer(CLASSES[task][best], float(probabilities[best]),
                               {name: float(p) for name, p in zip(CLASSES[task], probabilities)})
    return answers


# ---------------------------------------------------------------- runs, comparison roots and image folders


def is_run(folder: Path) -> bool:
    return (folder / MODEL_FILE).is_file() or (folder / CONFIG_FILE).is_file()


def runs_below(folder: Path) -> list[Path]:
    """The outermost run directories inside `folder` (a comparison or search root holds them as VARIANT/seed-K)."""
    found = sorted({marker.parent for name in (MODEL_FILE, CONFIG_FILE) for marker in folder.rglob(name)})
    return [run for run in found if not any(other in run.parents for other in found)]


def refuse_run_folders(folder: Path, as_images: bool) -> None:
    """A UserError when `folder` is a run or holds runs, so that no run's figures are ever read as photos."""
    if as_images and is_run(folder):
        raise UserError(f"'{folder}' is a run directory, not a folder of images; "
                        "give a run only as the first path, before the images.")
    runs = runs_below(folder)
    if runs:
        names = ", ".join(str(run.relative_to(folder)) for run in runs[:RUNS_LISTED])
        more = f" and {len(runs) - RUNS_LISTED} more" if len(runs) > RUNS_LISTED else ""
        raise UserError(f"'{folder}' holds runs ({names}{more}), not one model; "
                        f"give one of them, e.g. '{runs[0]}', as the model before the images.")


def _images_in(folder: Path) -> list[Path]:
    """The images in `folder`, listed as a dataset's are; a UserError names a folder inside that cannot be read."""
    return [Path(image) for image in list_images(folder)[0]]


def _plugin_name(saved):
    """A plug-in field's name as a saved config holds it: the name alone (the defaults, or a run before
    December 2026) or a mapping with its "type"."""
    return saved.get("type") if isinstance(saved, dict) else saved


def split_model_and_inputs(paths: list[str]) -> tuple[Path | None, list[Path]]:
    """(run directory, or None for the bundled model; inputs): the first path is the model when it is a run."""
    first, rest = Path(paths[0]), [Path(p) for p in paths[1:]]
    if first.is_dir():
        if is_run(first):
            return require_run(first), rest
        refuse_run_folders(first, as_images=False)
    # A missing or image-less folder followed by more paths was meant as a run directory: say what is wrong with it.
    meant_as_run = rest and first.suffix.lower() not in IMAGE_SUFFIXES and (
        not first.exists() or (first.is_dir() and not _images_in(first)))
    if meant_as_run:
        return require_run(first), rest
    if bundled_model_path().is_file():
        return None, [first, *rest]
    raise UserError(f"'{first}' is not a run directory and this installation has no bundled model, "
                    "so give a run directory (made by 'mtl train') before the images.")


def expand_inputs(paths: list[Path]) -> tuple[list[Item], list[str], bool]:
    """(images to read, one sentence per input that is unusable, whether any input was a folder)."""
    items, problems, any_folder = [], [], False
    for path in paths:
        if path.is_dir():
            refuse_run_folders(path, as_images=True)
            any_folder = True
            try:
                found = _images_in(path)
            except UserError as unreadable:
                problems.append(str(unreadable))
                continue
            if not found:
                problems.append(f"Folder '{path}' holds no images (JPEG, PNG, GIF, BMP or WebP).")
            items += [Item(str(image), path=image, relative=Path(path.resolve().name) / image.relative_to(path))
                      for image in found]
        elif path.exists():
            items.append(Item(str(path), path=path, relative=Path(path.name)))
        else:
            problems.append(f"Image '{path}' does not exist.")
    return items, problems, any_folder


def _items_of(images) -> tuple[list[Item], bool]:
    """(the images as Items, whether more than one was meant) for anything `Predictor.predict` takes."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        if not (isinstance(images, (str, os.PathLike)) and Path(images).is_dir()):
            return _items_of([images])[0], False
        images = [images]
    items = []
    for number, image in enumerate(images, start=1):
        if isinstance(image, (str, os.PathLike)):
            found, problems, _ = expand_inputs([Path(image)])
            if problems and Path(image).is_dir():
                raise UserError(problems[0])
            items += found or [Item(str(image), path=Path(image))]  # read, so its result says why it cannot be
        elif isinstance(image, (Image.Image, np.ndarray)):
            items.append(Item(f"image {number}", pixels=image))
        else:
            raise UserError(f"Image {number} is a {type(image).__name__}; expected a path, a PIL image "
                            "or a uint8 numpy array.")
    return items, True


def _rgb_pixels(item: Item) -> np.ndarray:
    """uint8 [H, W, 3] of an in-memory image, or a UserError naming it."""
    if isinstance(item.pixels, Image.Image):
        return np.asarray(item.pixels.convert("RGB"))
    pixels = item.pixels
    if pixels.dtype != np.uint8:
        raise UserError(f"{item.source.capitalize()} has {pixels.dtype} pixels; expected uint8 values 0-255.")
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[-1] == 1):
        return np.repeat(pixels.reshape(pixels.shape[:2])[..., None], 3, axis=-1)
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        return np.ascontiguousarray(pixels[..., :3])
    raise UserError(f"{item.source.capitalize()} has shape {pixels.shape}; expected [height, width] or "
                    "[height, width, 3].")


# ---------------------------------------------------------------- the predictor


def recorded_test_accuracies(model_dir: Path) -> dict[str, float]:
    """The gender and emotion headline test accuracies (0-1) of the model's metrics file, those it records."""
    headline = {}
    if (model_dir / METRICS_FILE).is_file():
        headline = json.loads((model_dir / METRICS_FILE).read_text()).get("headline", {})
    return {task: headline[f"{task}_accuracy"] for task in (GENDER, EMOTION) if headline.get(f"{task}_accuracy") is not None}


def refitted_heads(model_dir: Path) -> list[str]:
    """The heads that `mtl refit` changed in this run ([] for a trained run, or one whose heads it kept)."""
    path = model_dir / REFIT_FILE
    try:
        heads = json.loads(path.read_text()).get("heads", {}) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return []
    return [task for task, head in heads.items() if isinstance(head, dict) and head.get("chosen") not in (None, TRAINED_HEAD)]


def which_model(model_dir: Path, bundled: bool, runtime: str | None = None, doing: str = "Answering with") -> str:
    """One sentence saying which model answers (or, with `doing`, is scored: "Scoring"), with its test
    accuracies when its metrics file has them."""
    which = f"the bundled model ({model_dir})" if bundled else f"the run {model_dir}"
    details = []
    if (model_dir / CONFIG_FILE).is_file():
        config = json.loads((model_dir / CONFIG_FILE).read_text())  # read as JSON: checking it would import TensorFlow
        details.append(f"{_plugin_name(config.get('approach'))}, {_plugin_name(config.get('model', {}).get('backbone'))}")
    refitted = refitted_heads(model_dir)
    if refitted:
        details.append(f"{' and '.join(refitted)} head{'s' if len(refitted) > 1 else ''} refitted with groups weighed alike (mtl refit)")
    accuracies = [f"{task} {accuracy:.1%}" for task, accuracy in recorded_test_accuracies(model_dir).items()]
    details.append(f"test accuracy {', '.join(accuracies)}" if accuracies else "no test accuracy recorded")
    if runtime == lite.LiteModel.runtime:
        details.append(f"through LiteRT ({LITE_MODEL_FILE})")
    return f"{doing} {which}: {'; '.join(details)}."


class KerasModel:
    """Callable like `mtl.lite.LiteModel`: uint8 crops of any size -> each task's probabilities."""

    runtime = "Keras"

    def __init__(self, model):
        self.model = model
        self.image_size = model.input_shape[1]

    def __call__(self, crops: list[np.ndarray]) -> dict:
        import tensorflow as tf

        from mtl.data.images import resize

        batch = np.stack([resize(tf.constant(crop), self.image_size).numpy() for crop in crops])
        # Called eagerly: predict_on_batch would trace a graph for every new number of faces (slow, and warned about).
        outputs = self.model(batch.astype(np.float32), training=False)
        return {task: np.asarray(outputs[task]) for task in ANSWERS}


class Predictor:
    """A loaded mtl model that finds and classifies faces; made by `load`."""

    def __init__(self, model, model_dir: Path, bundled: bool):
        self.model = model  # a KerasModel or a lite.LiteModel
        self.model_dir = model_dir
        self.bundled = bundled

    @property
    def name(self) -> str:
        """What answered, as every JSON line says it: "bundled", or the run directory."""
        return BUNDLED if self.bundled else str(self.model_dir)

    @cached_property
    def test_accuracy(self) -> dict[str, float]:
        """The test accuracies its summary states, as every JSON line gives them: {"gender": 0.96, ...}."""
        return recorded_test_accuracies(self.model_dir)

    @property
    def runtime(self) -> str:
        return self.model.runtime

    def summary(self) -> str:
        return which_model(self.model_dir, self.bundled, self.runtime)

    def predict(self, images, detect: bool = True, detector: str = faces.DEFAULT_DETECTOR):
        """The faces of one image (an ImageResult), or of many (a list): a list, a folder or a 4-D array.

        `detect=False` takes each image as one face crop. One image that cannot be read is a UserError;
        among many, its result carries the sentence in `error` and the others are answered.
        """
        items, many = _items_of(images)
        results = list(self.predict_each(items, detect, detector))
        if not many:
            if results[0].error:
                raise UserError(results[0].error)
            return results[0]
        return results

    def predict_each(self, items: list[Item], detect: bool = True, detector: str = faces.DEFAULT_DETECTOR,
                     keep_photos: bool = False, on_progress=lambda done: None):
        """Yield an ImageResult per item, in order, one image at a time: memory holds one photo and its crops."""
        find_faces = faces.detector(detector) if detect else None
        for done, item in enumerate(items, start=1):
            on_progress(done)
            try:
                photo = self._photo(item)
            except UserError as error:
                yield ImageResult(item.source, error=str(error))
                continue
            # Without detection the whole image is the crop, resized by the model as a crop is.
            boxes = find_faces(photo) if detect else [None]
            crops = [photo if box is None else faces.crop_square(photo, box) for box in boxes]
            outputs = self.model(crops) if crops else None
            yield ImageResult(item.source, faces=[Face(box, **_answers(outputs, k)) for k, box in enumerate(boxes)],
                              photo=photo if keep_photos else None)

    def _photo(self, item: Item) -> np.ndarray:
        return read_pixels(item.path) if item.path is not None else _rgb_pixels(item)


def load(run_dir=None, runtime: str = "auto") -> Predictor:
    """The predictor of a run directory (made by `mtl train`), or of the bundled model when none is given.

    `runtime`: "keras", "litert" (the TFLite export beside the model, which must have been made from
    it) or "auto" (LiteRT when it can, else Keras).
    """
    if runtime not in RUNTIMES:
        raise UserError(f"Unknown runtime '{runtime}'; expected one of: {', '.join(RUNTIMES)}.")
    if run_dir is None:
        if not bundled_model_path().is_file():
            raise UserError("This installation has no bundled model; give a run directory made by 'mtl train'.")
        model_dir, bundled = bundled_model_path().parent, True
    else:
        model_dir, bundled = Path(run_dir), False
        if model_dir.is_dir() and not is_run(model_dir):
            refuse_run_folders(model_dir, as_images=False)
        require_run(model_dir)
    return Predictor(_model(model_dir, runtime), model_dir, bundled)


def _model(model_dir: Path, runtime: str):
    """The model of `model_dir` through `runtime`, or a UserError saying why LiteRT cannot answer for it."""
    lite_file, keras_file = model_dir / LITE_MODEL_FILE, model_dir / MODEL_FILE
    if runtime == "auto":
        runtime = "litert" if lite.available() and lite_file.is_file() and lite.is_export_of(lite_file, keras_file) \
            else "keras"
    if runtime == "litert":
        if not lite.available():
            raise UserError("The LiteRT runtime needs the package ai-edge-litert (pip install ai-edge-litert); "
                            "or choose --runtime keras.")
        if not lite_file.is_file():
            raise UserError(f"'{model_dir}' has no {LITE_MODEL_FILE} for LiteRT; make it with 'mtl export "
                            f"{model_dir} --format tflite --output {lite_file}', or choose --runtime keras.")
        if not lite.is_export_of(lite_file, keras_file):
            raise UserError(f"'{lite_file}' was not exported from '{keras_file}' as it is now (its contract "
                            f"records another file); export it again, or choose --runtime keras.")
        return lite.LiteModel(lite_file)
    start_tensorflow()
    plugins.load_for_run(model_dir)  # its model may hold a plug-in's layers
    from mtl.models.build import load_inference_model

    return KerasModel(load_inference_model(keras_file))


# ---------------------------------------------------------------- what the command prints


def describe(result: ImageResult) -> list[str]:
    """One line per face; one line saying so when the image has none."""
    if not result.faces:
        return [f"{result.source}: no face found"]
    lines = []
    for number, face in enumerate(result.faces, start=1):
        box = face.box
        where = "" if box is None else (
            f" face {number}/{len(result.faces)} at x={box.x:.0f} y={box.y:.0f} w={box.w:.0f} h={box.h:.0f}")
        labels = ", ".join(f"{task} {face.answer(task).label} ({face.answer(task).probability:.2f})" for task in ANSWERS)
        lines.append(f"{result.source}{where}: {labels}")
    return lines


def json_lines(result: ImageResult, model: str, test_accuracy: dict[str, float]) -> list[str]:
    """One JSON object per face (`face` numbered from 1); `"face": null` when the image has none. Each names the
    model and its recorded test accuracies (`model_test_accuracy`, empty when it has none)."""
    answered_by = {"model": model, "model_test_accuracy": test_accuracy}
    if not result.faces:
        return [json.dumps({"image": result.source, "faces": 0, "face": None, **answered_by})]
    return [
        json.dumps({"image": result.source, "faces": len(result.faces), "face": number,
                    "box": None if face.box is None else face.box.as_dict(),
                    **{task: asdict(face.answer(task)) for task in ANSWERS}, **answered_by})
        for number, face in enumerate(result.faces, start=1)
    ]


# ---------------------------------------------------------------- annotated copies


def annotation_targets(items: list[Item], annotate_dir: Path) -> dict[str, Path]:
    """Where each image's annotated copy goes (by source), distinct for every image, checked before any work.

    Refused: a target that is one of the inputs, and a target reached through a symbolic link.
    """
    if annotate_dir.exists() and not annotate_dir.is_dir():
        raise UserError(f"--annotate '{annotate_dir}' is a file; expected a folder to write annotated images to.")
    inputs = {item.path.resolve(): item.path for item in items}
    targets, taken = {}, set()
    for item in items:
        target = annotate_dir / item.relative
        if target.suffix.lower() not in IMAGE_SUFFIXES:
            target = target.with_name(target.name + ".png")
        stem, number = target.stem, 2
        while str(target).lower() in taken:  # e.g. a/photo.jpg and b/photo.jpg given as files
            target = target.with_name(f"{stem}-{number}{target.suffix}")
            number += 1
        taken.add(str(target).lower())
        for part in (target, *target.relative_to(annotate_dir).parents):
            if (annotate_dir / part).is_symlink():
                raise UserError(f"--annotate would write through the symbolic link '{annotate_dir / part}'; "
                                "choose a folder without links in it.")
        if target.resolve() in inputs:
            raise UserError(f"--annotate '{annotate_dir}' would write over the input '{inputs[target.resolve()]}'; "
                            "choose a folder outside the inputs' folders.")
        targets[item.source] = target
    return targets


def layout_labels(boxes: list[tuple], sizes: list[tuple], width: int, height: int) -> list[tuple]:
    """A (left, top, right, bottom) place per label: above its box, else below, else inside, never on another label.

    `boxes` are (left, top, right, bottom) in pixels, `sizes` each label's (width, height).
    """
    placed = []

    def free(rect):
        inside = rect[0] >= 0 and rect[1] >= 0 and rect[2] <= width and rect[3] <= height
        return inside and not any(rect[0] < o[2] and o[0] < rect[2] and rect[1] < o[3] and o[1] < rect[3]
                                  for o in placed)

    for (left, top, right, bottom), (label_width, label_height) in zip(boxes, sizes):
        x = min(max(0, left), max(0, width - label_width))
        candidates = [top - label_height, bottom, top]  # above, below, inside the box's top edge
        # Then further up and down, a label's height at a time, for faces crowded side by side.
        for step in range(1, 1 + height // max(label_height, 1)):
            candidates += [top - (step + 1) * label_height, bottom + step * label_height]
        spots = [(x, y, x + label_width, y + label_height) for y in candidates]
        placed.append(next((spot for spot in spots if free(spot)), spots[0]))
    return placed


def face_label(face: Face) -> str:
    """What an annotated copy writes by a face: gender and emotion, each with its probability."""
    return f"{face.gender.label} {face.gender.probability:.2f}, {face.emotion.label} {face.emotion.probability:.2f}"


def annotate(result: ImageResult) -> Image.Image:
    """The photo with each face's box, and its gender and emotion with their probabilities, drawn on it."""
    picture = Image.fromarray(result.photo)
    scale = max(1.0, ANNOTATION_MIN_SIDE / min(picture.size))
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(picture)
    line = max(2, round(min(picture.size) / 150))
    font = ImageFont.load_default(size=max(10, round(min(picture.size) / 28)))  # grows with the photo
    if not result.faces:
        draw.text((line, line), "no face found", fill="red", font=font)
        return picture
    boxes, labels, sizes = [], [], []
    for face in result.faces:
        box = face.box
        boxes.append((0, 0, picture.width - 1, picture.height - 1) if box is None else
                     (box.x * scale, box.y * scale, (box.x + box.w) * scale, (box.y + box.h) * scale))
        labels.append(face_label(face))
        left, top, right, bottom = draw.textbbox((0, 0), labels[-1], font=font)
        sizes.append((right + 2 * line, bottom + 2 * line))
    for box in boxes:
        draw.rectangle(box, outline="lime", width=line)
    for label, (left, top, right, bottom) in zip(labels, layout_labels(boxes, sizes, picture.width, picture.height)):
        draw.rectangle((left, top, right, bottom), fill="lime")
        draw.text((left + line, top + line), label, fill="black", font=font)
    return picture


# ---------------------------------------------------------------- the command


def predict_command(paths: list[str], as_json: bool = False, annotate_dir: str | None = None,
                    detector: str | None = faces.DEFAULT_DETECTOR, runtime: str = "auto", out=None, err=None) -> None:
    """`mtl predict`: print every face's answers, optionally write annotated copies; UserError if nothing was read."""
    out, err = out or sys.stdout, err or sys.stderr
    run_dir, inputs = split_model_and_inputs(paths)
    if not inputs:
        raise UserError(f"No images given after the run directory '{paths[0]}'; expected image files or folders.")
    items, problems, any_folder = expand_inputs(inputs)
    if not items:
        raise UserError(problems[0] if len(problems) == 1 else
                        f"None of the {len(problems)} inputs holds an image ({problems[0].rstrip('.')}).")
    targets = annotation_targets(items, Path(annotate_dir)) if annotate_dir is not None else {}
    for problem in problems:
        print(f"mtl: skipped: {problem}", file=err)
    predictor = load(run_dir, runtime)
    progress = any_folder and err.isatty()
    if progress:
        print(predictor.summary(), file=err, flush=True)  # before the progress line, which it would break

    def show_progress(done):
        if progress:
            print(f"\rpredicting: {done}/{len(items)} images", end="\n" if done == len(items) else "", file=err)

    unreadable, answered, written = [], 0, 0
    for result in predictor.predict_each(items, detect=detector is not None, detector=detector or "",
                                         keep_photos=bool(targets), on_progress=show_progress):
        if result.error:
            unreadable.append(result.error)
            if len(items) > 1:
                print(f"mtl: skipped: {result.error}", file=err)
            continue
        if not answered and not progress:
            print(predictor.summary(), file=err, flush=True)  # with the first answer: an error alone stays one sentence
        answered += 1
        for line in json_lines(result, predictor.name, predictor.test_accuracy) if as_json else describe(result):
            print(line, file=out, flush=True)
        if targets:
            target = targets[result.source]
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as temporary:  # a link at the target's name is replaced, never followed
                annotate(result).save(temporary, format=Image.registered_extensions()[target.suffix.lower()])
            written += 1
    if written:
        print(f"Annotated {written} image{'s' * (written != 1)} into {annotate_dir}", file=err)
    if len(unreadable) == len(items):
        raise UserError(unreadable[0] if len(unreadable) == 1 else
                        f"None of the {len(unreadable)} images could be read ({unreadable[0].rstrip('.')}).")
