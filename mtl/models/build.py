"""Networks as backbone + heads, and the inference model every approach saves.

A network maps raw images (float, 0..255, [size, size, 3]) to `{head: probabilities}`.
The inference model of any approach maps the same images to probabilities for all three
questions, `{"gender", "emotion", "four"}`, so evaluation and prediction never need to know
how a run was trained.
"""

import zipfile
from pathlib import Path

import keras
from keras import layers, ops

from mtl.config import DataConfig, ModelConfig
from mtl.errors import UserError
from mtl.models import backbones
from mtl.tasks import EMOTION, FOUR, GENDER, four_from_tasks, task_from_four


@keras.saving.register_keras_serializable(package="mtl")
class Grayscale(layers.Layer):
    """RGB to luminance, repeated over three channels: colour is removed inside the model."""

    def call(self, images):
        weights = ops.convert_to_tensor([0.299, 0.587, 0.114], dtype=images.dtype)
        grey = ops.sum(images * weights, axis=-1, keepdims=True)
        return ops.repeat(grey, 3, axis=-1)


@keras.saving.register_keras_serializable(package="mtl")
class OuterProduct(layers.Layer):
    """Four-class probabilities from emotion and gender probabilities (emotion-major order)."""

    def call(self, emotion, gender):
        return four_from_tasks(emotion, gender)


@keras.saving.register_keras_serializable(package="mtl")
class Marginal(layers.Layer):
    """One task's probabilities from four-class probabilities, summing over the other task."""

    def __init__(self, task: str, **kwargs):
        super().__init__(**kwargs)
        self.task = task

    def call(self, four):
        return task_from_four(four, self.task)

    def get_config(self):
        return {**super().get_config(), "task": self.task}


@keras.saving.register_keras_serializable(package="mtl")
class Mirror(layers.Layer):
    """Images flipped left to right (batch, height, width, channels)."""

    def call(self, images):
        return ops.flip(images, axis=2)


def image_input(data: DataConfig) -> keras.KerasTensor:
    return keras.Input((data.image_size, data.image_size, 3), name="image")


def build_network(model: ModelConfig, data: DataConfig, heads: dict[str, int], name: str) -> keras.Model:
    """Backbone named in `model` with one softmax head per entry of `heads` (name -> classes)."""
    images = image_input(data)
    x = Grayscale(name="grayscale")(images) if data.color == "gray" else images
    features = backbones.get(model.backbone.type)(x, model)
    outputs = {head: layers.Dense(classes, activation="softmax", name=head)(features) for head, classes in heads.items()}
    return keras.Model(images, outputs, name=name)


def inference_model(networks: list[keras.Model], data: DataConfig, flip_average: bool = False) -> keras.Model:
    """One model answering gender, emotion and four-class from the heads that `networks` have.

    Two-task heads combine into four classes by outer product; a four-class head answers each
    task by summing over the other. With `flip_average`, each head answers the mean of its
    answers for the image and its mirror image.
    """
    images = image_input(data)
    mirrored = Mirror(name="mirror")(images) if flip_average else None
    outputs = {}
    for network in networks:
        answers = network(images)
        if flip_average:
            answers_mirrored = network(mirrored)
            answers = {head: layers.Average(name=f"{head}_flip_average")([answers[head], answers_mirrored[head]]) for head in answers}
        outputs.update(answers)
    if FOUR in outputs:
        outputs.setdefault(GENDER, Marginal(GENDER, name="gender_from_four")(outputs[FOUR]))
        outputs.setdefault(EMOTION, Marginal(EMOTION, name="emotion_from_four")(outputs[FOUR]))
    else:
        outputs[FOUR] = OuterProduct(name="four_from_tasks")(outputs[EMOTION], outputs[GENDER])
    named = {task: layers.Identity(name=f"{task}_probabilities")(outputs[task]) for task in (GENDER, EMOTION, FOUR)}
    return keras.Model(images, {task: named[task] for task in (GENDER, EMOTION, FOUR)}, name="mtl_inference")


def load_inference_model(path: Path, image_size: int | None = None) -> keras.Model:
    """An mtl inference model, loaded in Keras's safe mode and checked, or a UserError.

    It must answer gender, emotion and four-class, and, if `image_size` is given, take images of that size.
    """
    check_model_archive(path)
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except Exception:  # a foreign or damaged file can fail in any of Keras's loaders; all mean the same
        raise UserError(f"Model file '{path}' cannot be loaded; expected a .keras model saved by mtl.") from None
    if not isinstance(model, keras.Model):  # a .keras file may hold any saveable object, a lone layer included
        raise UserError(f"Model file '{path}' holds a {type(model).__name__} layer, not a model; "
                        "expected a .keras model saved by mtl.")
    try:
        outputs = model.output if isinstance(model.output, dict) else {}
        names = sorted(outputs) or model.output_names
    except (AttributeError, ValueError):  # a model never called (an unbuilt Sequential) has no outputs at all
        outputs, names = {}, []
    if set(outputs) != {GENDER, EMOTION, FOUR}:
        raise UserError(f"Model file '{path}' has outputs {names}; "
                        f"expected the outputs gender, emotion, four of an mtl model.")
    if image_size is not None and tuple(model.input_shape[1:3]) != (image_size, image_size):
        raise UserError(f"Model file '{path}' takes {model.input_shape[1]}x{model.input_shape[2]} images, "
                        f"but the config says data.image_size={image_size}.")
    return model


# What a .keras archive may inflate to: its JSON (config, metadata) is read whole into memory, and
# mtl's largest models weigh tens of megabytes.
MAX_MODEL_JSON_BYTES = 16_000_000
MAX_MODEL_BYTES = 4_000_000_000


def check_model_archive(path: Path) -> None:
    """Refuse, before Keras inflates anything, a file that is no regular file or whose members would inflate too far.

    The sizes come from the zip's directory: a 4 MB file whose config.json inflates to 1 GiB is refused
    without inflating it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Model file '{path}' is not a regular file; expected a .keras model saved by mtl.")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: Keras refuses it below, in the same sentence as any damaged file
    json_bytes = max((member.file_size for member in members if member.filename.endswith(".json")), default=0)
    if json_bytes > MAX_MODEL_JSON_BYTES or sum(member.file_size for member in members) > MAX_MODEL_BYTES:
        raise UserError(
            f"Model file '{path}' would inflate to {sum(member.file_size for member in members)} bytes "
            f"(JSON at most {MAX_MODEL_JSON_BYTES}, all at most {MAX_MODEL_BYTES}); expected a .keras model saved by mtl."
        )
