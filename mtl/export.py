"""`mtl export`: a run's model as a TensorFlow SavedModel or a TFLite file for serving outside mtl.

The exported signature `serve` takes a batch of raw face crops, uint8 [N, H, W, 3] of any size,
resizes them inside exactly as mtl's pipeline does (`mtl.data.images.resize`: antialiased,
rounded, clipped) and returns the probabilities of `gender`, `emotion` and `four`.
"""

import os
import tempfile
from pathlib import Path

import tensorflow as tf

from mtl.data.images import resize
from mtl.errors import UserError
from mtl.models.build import load_inference_model
from mtl.predict import bundled_model_path
from mtl.runs import MODEL_FILE, require_run

SIGNATURE = "serve"
FORMATS = ("savedmodel", "tflite")


def serving_function(model, resizer=resize):
    """A tf.function from uint8 crops of any size to the model's three answers."""
    size = model.input_shape[1]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def serve(images):
        faces = tf.cast(resizer(images, size), tf.float32)
        return model(faces, training=False)

    return serve


def _triangle_weights(input_size, output_size: int) -> tf.Tensor:
    """[output, input] weights of TensorFlow's antialiased bilinear resize along one axis (its
    ScaleAndTranslate op, triangle kernel widened by the shrink factor), from ops TFLite has."""
    scale = output_size / tf.cast(input_size, tf.float32)
    kernel_scale = tf.maximum(1 / scale, 1.0)
    samples = (tf.range(output_size, dtype=tf.float32) + 0.5) / scale
    centres = tf.cast(tf.range(input_size), tf.float32) + 0.5
    weights = tf.maximum(0.0, 1 - tf.abs(centres[None, :] - samples[:, None]) / kernel_scale)
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def matrix_resize(images: tf.Tensor, image_size: int) -> tf.Tensor:
    """`mtl.data.images.resize` as two matrix products: the same pixels (a rare tie may round the other
    way), for TFLite, which has no kernel for the antialiased resize."""
    rows = _triangle_weights(tf.shape(images)[1], image_size)
    columns = _triangle_weights(tf.shape(images)[2], image_size)
    channels_first = tf.transpose(tf.cast(images, tf.float32), (0, 3, 1, 2))
    resized = tf.matmul(tf.matmul(rows, channels_first), columns, transpose_b=True)
    resized = tf.transpose(resized, (0, 2, 3, 1))
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def write_savedmodel(model, output: Path, resizer=resize) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serving_function(model, resizer))
    archive.write_out(str(output), verbose=False)


def write_tflite(model, output: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        write_savedmodel(model, Path(scratch) / "savedmodel", matrix_resize)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(scratch) / "savedmodel"), [SIGNATURE])
        output.write_bytes(converter.convert())


def export_command(run_dir: str | None, format: str, output: Path) -> None:
    """Export the run's model (or the bundled one) in `format` to `output`, which must not exist yet."""
    if format not in FORMATS:
        raise UserError(f"Unknown export format '{format}'; expected one of: {', '.join(FORMATS)}.")
    if output.exists():
        raise UserError(f"'{output}' already exists; choose another --output.")
    if output.is_symlink():  # a dangling link: writing would create whatever it points at
        raise UserError(f"--output '{output}' is a symbolic link to '{os.readlink(output)}'; choose a new path.")
    existing = next(folder for folder in output.absolute().parents if folder.exists())
    if not existing.is_dir():
        raise UserError(f"--output '{output}' cannot be written: '{existing}' is a file, not a folder.")
    if run_dir is not None:
        model_file = require_run(Path(run_dir)) / MODEL_FILE
    elif bundled_model_path().is_file():
        model_file = bundled_model_path()
    else:
        raise UserError("No run directory given and this installation has no bundled model; "
                        "give the run directory (made by 'mtl train') to export.")
    model = load_inference_model(model_file)
    output.parent.mkdir(parents=True, exist_ok=True)
    (write_savedmodel if format == "savedmodel" else write_tflite)(model, output)
    print(f"Exported {model_file} as {format} to {output} (signature '{SIGNATURE}': uint8 images -> probabilities)")
