"""`mtl export`: a run's model as a TensorFlow SavedModel or a TFLite file for serving outside mtl.

The exported signature `serve` takes a batch of raw face crops, uint8 [N, H, W, 3] RGB or
[N, H, W, 1] grey of any size, makes grey 3-channel and resizes inside exactly as mtl's pipeline
does (`mtl.data.images.resize`: antialiased, rounded, clipped) and returns the probabilities of
`gender`, `emotion` and `four`. Each export describes itself (`contract()`: the class names of
every output, the input, the framing rule of a face), so it can be served without mtl:
- SavedModel: a second signature `describe` returning that JSON as `contract`, and the same
  JSON as `assets/CONTRACT_FILE`;
- TFLite: outputs and input named after the signature's keys, the JSON as the flatbuffer's
  metadata entry METADATA_NAME, and beside the file as `<file>.json`.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl.compat import tflite_schema
from mtl.data.images import resize
from mtl.errors import UserError
from mtl.faces import CROP_MARGIN
from mtl.lite import METADATA_NAME, SIGNATURE, file_digest, sidecar
from mtl.models.build import load_inference_model
from mtl.runs import (MODEL_FILE, atomic_folder, atomic_path, bundled_model_path, check_output_path, disk_full, no_space,
                      output_lock, require_run)
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER

DESCRIBE_SIGNATURE = "describe"
CONTRACT_FILE = "mtl_contract.json"
FORMATS = ("savedmodel", "tflite")


def contract(model, model_file: Path | None = None) -> dict:
    """What a server needs to know of an export: its input, its outputs' class names, how to frame a face,
    and (given `model_file`) which Keras file it was made from, so that a stale export can be told apart."""
    size = model.input_shape[1]
    made_from = {} if model_file is None else {
        "exported_from": {"file": Path(model_file).name, "sha256": file_digest(model_file)}}
    return {
        "signature": SIGNATURE,
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": ["batch", "height", "width", "channels: 3 (RGB) or 1 (grey)"],
            "description": f"face crops of any size, 0-255, one size per batch; grey is made 3-channel "
                           f"and every crop resized to {size}x{size} inside",
        },
        "outputs": {task: {"classes": list(CLASSES[task]), "description": "probabilities, in the order of classes"}
                    for task in (GENDER, EMOTION, FOUR)},
        "framing": {
            "crop_margin": CROP_MARGIN,
            "rule": "crop a square of side crop_margin times the larger side of the face detector's box, "
                    "centred on the box's centre",
        },
        **made_from,
    }


def serving_function(model, resizer=resize):
    """A tf.function from uint8 RGB or grey crops of any size to the model's three answers."""
    size = model.input_shape[1]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name="images")])
    def serve(images):
        # One channel broadcasts to three; three stay as they are (any other count is an error).
        rgb = tf.broadcast_to(images, tf.concat([tf.shape(images)[:3], [3]], axis=0))
        faces = tf.cast(resizer(rgb, size), tf.float32)
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


def write_savedmodel(model, output: Path, resizer=resize, model_file: Path | None = None) -> None:
    import keras

    described = json.dumps(contract(model, model_file), indent=2)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serving_function(model, resizer))
    archive.add_endpoint(
        DESCRIBE_SIGNATURE, tf.function(lambda: {"contract": tf.constant(described)}, input_signature=[])
    )
    archive.write_out(str(output), verbose=False)
    (output / "assets").mkdir(exist_ok=True)
    (output / "assets" / CONTRACT_FILE).write_text(described + "\n")


def write_tflite(model, output: Path, model_file: Path | None = None) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        write_savedmodel(model, Path(scratch) / "savedmodel", matrix_resize)
        # Only `serve`: TFLite has no use for a signature without inputs, the contract goes in the metadata.
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(scratch) / "savedmodel"), [SIGNATURE])
        flatbuffer = converter.convert()
    described = json.dumps(contract(model, model_file), indent=2)
    # Both written aside; the description is renamed into place first, so a TFLite file at `output` is a whole export.
    with atomic_path(output) as lite_file:
        lite_file.write_bytes(described_tflite(flatbuffer, described))
        with atomic_path(sidecar(output)) as description:
            description.write_text(described + "\n")


def described_tflite(flatbuffer: bytes, described: str) -> bytes:
    """The TFLite model with its tensors named after its signature's keys and `described` as metadata.

    tf.lite has no public API for either (tflite_support's metadata writers are not installed), so
    this edits the flatbuffer with the schema tools TensorFlow ships (`mtl.compat.tflite_schema`);
    tests/test_export.py reads both back, and fails if an upgrade breaks them.
    """
    schema, flatbuffer_utils = tflite_schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    for signature in model.signatureDefs:
        tensors = model.subgraphs[signature.subgraphIndex].tensors
        for named in [*signature.inputs, *signature.outputs]:
            tensors[named.tensorIndex].name = named.name  # "gender", not "StatefulPartitionedCall_1:2"
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(described.encode(), dtype=np.uint8)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME.encode(), len(model.buffers)
    model.buffers.append(buffer)
    model.metadata = [*(model.metadata or []), entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def refuse_taken(output: Path, format: str) -> None:
    """A UserError if anything is at `output`, or at the TFLite file's description beside it: an export never replaces."""
    if output.exists():
        raise UserError(f"'{output}' already exists; choose another --output.")
    if format == "tflite" and sidecar(output).exists():
        raise UserError(f"'{sidecar(output)}', where the description of '{output}' goes, already exists; choose another --output.")


def export_command(run_dir: str | None, format: str, output: Path) -> None:
    """Export the run's model (or the bundled one) in `format` to `output`, which must not exist yet."""
    if format not in FORMATS:
        raise UserError(f"Unknown export format '{format}'; expected one of: {', '.join(FORMATS)}.")
    refuse_taken(output, format)
    check_output_path(output)  # a dangling link: writing would create whatever it points at
    if run_dir is not None:
        model_file = require_run(Path(run_dir)) / MODEL_FILE
    elif bundled_model_path().is_file():
        model_file = bundled_model_path()
    else:
        raise UserError("No run directory given and this installation has no bundled model; "
                        "give the run directory (made by 'mtl train') to export.")
    model = load_inference_model(model_file)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(output):  # one process at a time writes this export
        refuse_taken(output, format)  # again: another process may have finished it meanwhile
        try:  # written aside and renamed when whole: a kill or a full disk leaves no half export blocking the retry
            if format == "savedmodel":
                with atomic_folder(output) as folder:
                    write_savedmodel(model, folder, model_file=model_file)
            else:
                write_tflite(model, output, model_file=model_file)
        except Exception as error:
            if not disk_full(error):
                raise
            raise no_space(output) from None
    described = f"signature '{DESCRIBE_SIGNATURE}' and assets/{CONTRACT_FILE}" if format == "savedmodel" else (
        f"metadata '{METADATA_NAME}' and {sidecar(output)}")
    print(f"Exported {model_file} as {format} to {output} (signature '{SIGNATURE}': uint8 RGB or grey crops -> "
          f"probabilities; class names, input and framing in {described})")
