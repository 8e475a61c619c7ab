"""Pseudo-labels: the teachers, cross-labelling with them, and reading the merged set back.

Each teacher (a separate-approach run) labels the other dataset, and the merged set is written to disk.

The merged training set is stored as TFRecord shards. Each record holds the image (PNG),
its true labels (-1 where missing), both teachers' predicted probabilities, the predicted
label and confidence for the task the image lacks, and the dataset it came from. Training
reads the shards back and chooses how to use the predictions (see `mtl.labels`).
"""

import json
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mtl.data.pipeline import ExperimentData
from mtl.data.sources import SOURCE
from mtl.errors import UserError
from mtl.groups import other_task
from mtl.models.build import load_inference_model
from mtl.runs import MODEL_FILE, write_json
from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS

log = logging.getLogger(__name__)

MERGED_DIR = "crosslabeled"  # inside a run or search directory
SHARD_PATTERN = "merged-{index:05d}-of-{count:05d}.tfrecord"
SUMMARY_FILE = "summary.json"
EXAMPLES_PER_SHARD = 4096

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "gender": tf.io.FixedLenFeature([], tf.int64),
    "emotion": tf.io.FixedLenFeature([], tf.int64),
    "gender_probs": tf.io.FixedLenFeature([len(CLASSES[GENDER])], tf.float32),
    "emotion_probs": tf.io.FixedLenFeature([len(CLASSES[EMOTION])], tf.float32),
    "predicted_label": tf.io.FixedLenFeature([], tf.int64),
    "confidence": tf.io.FixedLenFeature([], tf.float32),
    "source": tf.io.FixedLenFeature([], tf.string),
    # Which of its task's training sources the image came from; shards written before sources
    # could be listed have none, and had one source.
    "source_id": tf.io.FixedLenFeature([], tf.int64, default_value=0),
}


def _example(png: bytes, labels, probs, source: str, source_id: int = 0) -> bytes:
    missing = EMOTION if source == GENDER else GENDER
    predicted = int(np.argmax(probs[missing]))

    def ints(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in np.ravel(values)]))

    def raw(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    features = {
        "image": raw(png),
        "gender": ints(labels[GENDER]),
        "emotion": ints(labels[EMOTION]),
        "gender_probs": floats(probs[GENDER]),
        "emotion_probs": floats(probs[EMOTION]),
        "predicted_label": ints(predicted),
        "confidence": floats([probs[missing][predicted]]),
        "source": raw(source.encode()),
        "source_id": ints(source_id),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def require_teacher(run_dir: str | Path) -> Path:
    """The model file of the teacher run `run_dir`, or the sentence saying it has none."""
    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise UserError(f"Teacher run '{run_dir}' holds no {MODEL_FILE}; train the separate approach first.")
    return path


def load_teacher(run_dir: str | Path, image_size: int | None = None) -> keras.Model:
    """The inference model of a finished separate-approach run, to cross-label with (or to name a refit's
    groups); with `image_size`, one that takes images of that size, or a UserError."""
    path = require_teacher(run_dir)
    log.info("Using the separate models of '%s' as teachers.", run_dir)
    return load_inference_model(path, image_size)


def merged_examples(directory: Path) -> int:
    """How many images the cross-labelled set in `directory` holds."""
    return json.loads((Path(directory) / SUMMARY_FILE).read_text())["examples"]


def confound_table(counts: np.ndarray, task: str, names: list[str]) -> dict:
    """{source: {task: t, "female|happy": faces, ...}} from counts[source, class of task, teacher's class of the other]."""
    other = other_task(task)
    return {
        name: {"task": task} | {
            f"{own}|{theirs}": int(per_source[i, j])
            for i, own in enumerate(CLASSES[task]) for j, theirs in enumerate(CLASSES[other])
        }
        for name, per_source in zip(names, counts)
    }


def confound_lines(confound: dict) -> list[str]:
    """One sentence per training source: the share of each of its classes the teachers put in the other task's first class.

    'gender_training: the teachers call happy 80% of its female faces and 63% of its male faces.'
    Far apart, a model can learn one task as a shortcut for the other ("smiling means female").
    """
    lines = []
    for name, table in confound.items():
        task = table["task"]
        other = other_task(task)
        first = CLASSES[other][0]
        shares = []
        for own in CLASSES[task]:
            total = sum(table[f"{own}|{theirs}"] for theirs in CLASSES[other])
            shares.append(f"{100 * table[f'{own}|{first}'] / total:.0f}% of its {own} faces" if total else f"no {own} faces")
        lines.append(f"{name}: the teachers call {first} {' and '.join(shares)}.")
    return lines


def cross_label(teacher: keras.Model, data: ExperimentData, out_dir: Path, batch_size: int = 256) -> dict:
    """Label both training splits with `teacher` (an inference model) and write the merged shards.

    Only the training splits are merged: the validation splits keep their true labels for
    model selection, and the test sets are never touched. Returns the summary it writes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=False)
    parts = {GENDER: data.gender_train, EMOTION: data.emotion_train}
    total = sum(len(source) for source in parts.values())
    count = max(1, -(-total // EXAMPLES_PER_SHARD))
    writers = [tf.io.TFRecordWriter(str(out_dir / SHARD_PATTERN.format(index=i, count=count))) for i in range(count)]
    written, agreement, confound = 0, {}, {}
    try:
        for task, source in parts.items():
            missing = EMOTION if task == GENDER else GENDER
            confident = []
            # [its source, its class, the teacher's class for the task it lacks]: how confounded the two tasks are
            counts = np.zeros((len(source.source_names), len(CLASSES[task]), len(CLASSES[missing])), np.int64)
            # PNG encoding runs in tf.data's threads beside the teacher; one eager call per image was the bottleneck.
            batches = data.images(source).map(
                lambda image, labels: (image, tf.io.encode_png(image), labels), num_parallel_calls=tf.data.AUTOTUNE
            ).batch(batch_size).prefetch(1)
            for images, pngs, labels in batches:
                probs = teacher.predict_on_batch(tf.cast(images, tf.float32))
                probs = {task: np.asarray(probs[task]) for task in TASKS}
                source_ids = labels[SOURCE].numpy()
                labels = {task: labels[task].numpy() for task in TASKS}
                for i, png in enumerate(pngs.numpy()):
                    example_labels = {task: int(labels[task][i]) for task in TASKS}
                    example_probs = {task: probs[task][i] for task in TASKS}
                    example = _example(png, example_labels, example_probs, task, int(source_ids[i]))
                    writers[written % count].write(example)
                    confident.append(float(probs[missing][i].max()))
                    counts[source_ids[i], labels[task][i], int(np.argmax(example_probs[missing]))] += 1
                    written += 1
                print(f"cross-labelling: {written}/{total} images", flush=True)
            agreement[task] = {
                "images": len(confident),
                "mean_confidence_on_missing_task": float(np.mean(confident)) if confident else None,
            }
            confound.update(confound_table(counts, task, data.source_names(task)))
    finally:
        for writer in writers:
            writer.close()
    summary = {"examples": written, "shards": count, "by_source": agreement, "confound": confound}
    write_json(out_dir / SUMMARY_FILE, summary)  # last, and whole: it marks the shards as finished
    return summary


def read_merged(directory: Path, source: str | None = None, source_id: int | None = None) -> tf.data.Dataset:
    """(uint8 image, labels, predictions) from the shards, optionally of one task's dataset (`source`)
    and of one of its sources (`source_id`); labels carry the source's index as `labels["source"]`."""
    files = sorted(str(path) for path in Path(directory).glob("merged-*.tfrecord"))
    if not files:
        raise UserError(f"Folder '{directory}' holds no cross-labelled shards (merged-*.tfrecord).")
    records = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE)
    parsed = records.map(lambda record: tf.io.parse_single_example(record, _FEATURES), num_parallel_calls=tf.data.AUTOTUNE)
    if source is not None:
        parsed = parsed.filter(lambda example: tf.equal(example["source"], source))
    if source_id is not None:
        parsed = parsed.filter(lambda example: tf.equal(example["source_id"], source_id))
    return parsed.map(_split_example, num_parallel_calls=tf.data.AUTOTUNE)


def _split_example(example):
    image = tf.ensure_shape(tf.io.decode_png(example["image"], channels=3), (None, None, 3))
    labels = {task: tf.cast(example[task], tf.int32) for task in TASKS}
    labels[SOURCE] = tf.cast(example["source_id"], tf.int32)
    predictions = {task: example[f"{task}_probs"] for task in TASKS}
    return image, labels, predictions
