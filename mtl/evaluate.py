"""Honest evaluation of a run on held-out test sets, against true labels, overall and per group.

Every approach saves one inference model answering gender, emotion and four-class, so all
runs are scored the same way: gender on every gender test source (`gender/Validation`,
`utkface/test`), emotion on the FER2013 test set and on Happy House, and all three on a jointly
labelled folder when one is given.

Each task is also scored per group of people, because a model right on average can be wrong for
one group: by the other task's class (true where the set labels it, else the reference
labeller's answer (`mtl.runs.reference_labeller_path`: one fixed model, not the bundled one, so
that groups are comparable across runs and across bundled models)), and by each
attribute a source carries (UTKFace: age band and ethnicity), each crossed with the true class.
The worst group's accuracy and the confound gap (within one true class, how far apart the other
task's groups are: "are sad women called women as often as happy ones") are first-class metrics.
The agreement of a four-class model with its own pseudo-labels is reported apart, since it
measures consistency with the teachers, not correctness.
"""

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix

from mtl.config import ApproachConfig, DataConfig, PluginOptions, load_config
from mtl.dashboard.figures import confusion_matrix_image, save_png
from mtl.data.pipeline import evaluation_batches, test_sets
from mtl.faces import detected_faces
from mtl.labels import four_class_targets
from mtl.metrics import ACCURACY, CONFOUND_GAP, DETECTED, FACE_FOUND_RATE, JOINT_TEST, WORST_GROUP, headline
from mtl.models.build import load_inference_model
from mtl.provenance import provenance
from mtl.pseudo_labels import MERGED_DIR, read_merged
from mtl.runs import CONFIG_FILE, MODEL_FILE, atomic_path, reference_labeller_path, require_run, write_json
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER, TASKS, four_class_index

CORRECT_FILE = "correct.npz"  # in the evaluation folder: per test set and task, whether each image was right
# A group with fewer images is listed but never taken as the worst: one or two faces say nothing.
MIN_GROUP_IMAGES = 20
OTHER_TASK = {GENDER: EMOTION, EMOTION: GENDER}


@dataclass
class TestSetSample:
    """A test set's first batch of images with the model's answers and the labels of every image,
    for the face grids of the dashboard (whose first images are those of `images`)."""

    images: np.ndarray  # uint8, [batch, size, size, 3]
    probabilities: dict[str, np.ndarray]  # task -> [images in the set, classes]
    labels: dict[str, np.ndarray]  # task -> [images in the set], -1 where unlabelled


@dataclass
class Evaluation:
    """What scoring a run gives: the metrics (exactly what metrics.json holds), a sample of each test
    set for the figures, and per test set and task whether each image was answered right."""

    metrics: dict
    samples: dict[str, TestSetSample]
    correct: dict[str, np.ndarray]  # "<test set>/<task>" -> bool per image, for paired tests between runs


def predict_dataset(model: keras.Model, examples: tf.data.Dataset, batch_size: int):
    """(probabilities {task: [N, classes]}, labels {task: [N]}, images uint8 of the first batch)."""
    probabilities = {task: [] for task in (GENDER, EMOTION, FOUR)}
    labels = {task: [] for task in TASKS}
    first_images = None
    for images, batch_labels in evaluation_batches(examples, batch_size):
        if first_images is None:
            first_images = images.numpy().astype(np.uint8)
        outputs = model.predict_on_batch(images)
        for task in probabilities:
            probabilities[task].append(np.asarray(outputs[task]))
        for task in TASKS:
            labels[task].append(batch_labels[task].numpy())
    return (
        {task: np.concatenate(values) for task, values in probabilities.items()},
        {task: np.concatenate(values) for task, values in labels.items()},
        first_images,
    )


def task_scores(task: str, true: np.ndarray, probabilities: np.ndarray) -> dict:
    predicted = probabilities.argmax(axis=1)
    classes = CLASSES[task]
    return {
        ACCURACY: float(accuracy_score(true, predicted)),
        "images": int(len(true)),
        "per_class": classification_report(
            true, predicted, labels=list(range(len(classes))), target_names=classes, output_dict=True, zero_division=0
        ),
        "confusion_matrix": confusion_matrix(true, predicted, labels=list(range(len(classes)))).tolist(),
        "classes": list(classes),
    }


def labelled(probabilities: dict, labels: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """task -> (true labels, probabilities) over the images that have its label; four-class where both are labelled."""
    answered = {}
    for task in TASKS:
        known = labels[task] >= 0
        if known.any():
            answered[task] = (labels[task][known], probabilities[task][known])
    both = (labels[GENDER] >= 0) & (labels[EMOTION] >= 0)
    if both.any():
        four_true = np.array([four_class_index(e, g) for e, g in zip(labels[EMOTION][both], labels[GENDER][both])])
        answered[FOUR] = (four_true, probabilities[FOUR][both])
    return answered


def score_test_set(probabilities: dict, labels: dict, groups: dict[str, np.ndarray] | None = None) -> dict:
    """Scores for every task that this test set labels, and four-class when it labels both.

    `groups` maps an attribute (the other task, "age_band", "ethnicity") to its value per image;
    each task is then also scored per group (see `group_scores`).
    """
    answered = labelled(probabilities, labels)
    scores = {task: task_scores(task, true, probs) for task, (true, probs) in answered.items()}
    for task in TASKS:
        if task in scores and groups:
            true, probs = answered[task]
            scores[task].update(group_scores(task, true, probs.argmax(axis=1), task_families(groups, labels, task)))
    return scores


def task_families(groups: dict[str, np.ndarray], labels: dict, task: str) -> dict[str, np.ndarray]:
    """The families `task` is scored by (every attribute but the task itself), over the images it labels."""
    known = labels[task] >= 0
    return {attribute: values[known] for attribute, values in groups.items() if attribute != task}


def group_members(task: str, true: np.ndarray, families: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{family: {"female|sad": bool mask}}: each family's values crossed with the true class; an image
    without a value for a family (a source without that attribute) is in none of its groups."""
    classes = np.array(CLASSES[task])[true]
    members = {}
    for family, values in families.items():
        cells = {"|".join(name): (classes == name[0]) & (values == name[1])
                 for name in sorted(set(zip(classes, values))) if name[1]}
        if cells:
            members[family] = cells
    return members


def group_scores(task: str, true: np.ndarray, predicted: np.ndarray, families: dict[str, np.ndarray]) -> dict:
    """Accuracy per group, each family's values crossed with the true class ("female|sad", "male|60+"),
    the worst group of at least MIN_GROUP_IMAGES images, and the confound gap of the other task's family."""
    right = predicted == true
    groups = {
        family: {name: {"accuracy": float(right[members].mean()), "images": int(members.sum())} for name, members in cells.items()}
        for family, cells in group_members(task, true, families).items()
    }
    counted = [(f"{family}:{name}", cell) for family, cells in groups.items() for name, cell in cells.items()
               if cell["images"] >= MIN_GROUP_IMAGES]
    worst = min(counted, key=lambda item: item[1]["accuracy"], default=None)
    return {
        "groups": groups,
        "worst_group": worst[0] if worst else None,
        WORST_GROUP: worst[1]["accuracy"] if worst else None,
        CONFOUND_GAP: confound_gap(groups.get(OTHER_TASK[task], {})),
    }


def confound_gap(cells: dict[str, dict]) -> float | None:
    """Within one true class, the largest distance between the other task's groups (of enough images)."""
    gaps = []
    for true_class in {name.split("|")[0] for name in cells}:
        accuracies = [cell["accuracy"] for name, cell in cells.items()
                      if name.split("|")[0] == true_class and cell["images"] >= MIN_GROUP_IMAGES]
        if len(accuracies) > 1:
            gaps.append(max(accuracies) - min(accuracies))
    return max(gaps) if gaps else None


_REFERENCE_ANSWERS: dict[tuple[str, str], np.ndarray] = {}  # (test source, task) -> class names, once per process


def reference_answers(source, task: str) -> np.ndarray:
    """The reference labeller's class name for `task` per image of a test source."""
    key = (source.name, task)
    if key not in _REFERENCE_ANSWERS:
        model = _reference_labeller()
        probabilities, _, _ = predict_dataset(model, source.dataset(int(model.input.shape[1])), 256)
        _REFERENCE_ANSWERS[key] = np.array(CLASSES[task])[probabilities[task].argmax(axis=1)]
    return _REFERENCE_ANSWERS[key]


@functools.cache
def _reference_labeller() -> keras.Model:
    return load_inference_model(reference_labeller_path())


def test_set_groups(source) -> dict[str, np.ndarray]:
    """Per image of a test source: each task's class (true where labelled, else the reference
    labeller's answer) and the source's own attributes (age band, ethnicity)."""
    groups = dict(getattr(source, "groups", {}))
    for task in TASKS:
        if (source.labels[task] >= 0).all():
            groups[task] = np.array(CLASSES[task])[source.labels[task]]
        elif (source.labels[OTHER_TASK[task]] >= 0).any() and reference_labeller_path().is_file():
            groups[task] = reference_answers(source, task)
    return groups


def pseudo_label_agreement(model: keras.Model, run_dir: Path, batch_size: int) -> dict | None:
    """How often the model's four-class answer matches the hard pseudo four-class label it trained on.

    This is the figure the notebook reported as accuracy; it is kept only for comparison.
    """
    merged = run_dir / MERGED_DIR
    if not merged.is_dir():
        return None
    # By name, not by the run's own label source: the notebook's figure is agreement with its hard
    # cross-labels, whatever labels this run trained on, so the comparison stays the notebook's.
    hard = ApproachConfig(pseudo_labels=PluginOptions("hard"))
    matches, total = 0, 0
    for images, labels, predictions in read_merged(merged).batch(batch_size):
        targets, _ = four_class_targets(labels, predictions, hard)
        pseudo = np.argmax(targets[FOUR], axis=1)
        answer = np.asarray(model.predict_on_batch(tf.cast(images, tf.float32))[FOUR]).argmax(axis=1)
        matches += int((answer == pseudo).sum())
        total += len(pseudo)
    return {"images": total, "agreement": matches / total if total else None}


def inference_milliseconds(model: keras.Model, image_size: int, batch_size: int = 64, repeats: int = 5) -> float:
    """Median wall-clock milliseconds per image for batched prediction (a measurement, never asserted)."""
    batch = tf.random.uniform((batch_size, image_size, image_size, 3), 0, 255)
    model.predict_on_batch(batch)  # warm-up: tracing and allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times) / batch_size * 1000)


def scored_sets(data: DataConfig, detect: bool):
    """(name, size, examples, extra scores, groups) of every test set; photographs also as detected faces.

    A source of photographs (Happy House) is always scored on detected faces too; the joint folder
    only with `detect`. Groups are given for face crops only (not for whole photographs).
    """
    for name, source in test_sets(data).items():
        # A photograph's whole-image score is no fair account of anyone: its groups come from its faces.
        groups = None if source.photographs else test_set_groups(source)
        yield name, len(source), source.dataset(data.image_size), {}, groups
        if source.photographs or (detect and name == JOINT_TEST):
            examples, found_rate = detected_faces(source, data.image_size)
            yield name + DETECTED, len(source), examples, {FACE_FOUND_RATE: found_rate}, None


def evaluate_run(run_dir: Path, data: DataConfig | None = None, artifacts_dir: Path | None = None,
                 detect: bool = False) -> Evaluation:
    """Score the run's model on every test set; writes confusion matrices (JSON, PNG) and the
    per-image correctness into `artifacts_dir` if given."""
    run_dir = require_run(run_dir)
    config = load_config(run_dir / CONFIG_FILE)
    data = data or config.data
    model = load_inference_model(run_dir / MODEL_FILE, data.image_size)
    metrics = {"run": run_dir.name, "approach": config.approach.type, "backbone": config.model.backbone.type, "test_sets": {}}
    samples, correct = {}, {}
    for name, size, examples, extra, groups in scored_sets(data, detect):
        print(f"evaluating on {name} ({size} images)", flush=True)
        probabilities, labels, first_images = predict_dataset(model, examples, data.batch_size)
        scores = score_test_set(probabilities, labels, groups)
        metrics["test_sets"][name] = {**scores, **extra}
        samples[name] = TestSetSample(first_images, probabilities, labels)
        for task, (true, probs) in labelled(probabilities, labels).items():
            correct[f"{name}/{task}"] = probs.argmax(axis=1) == true
        if artifacts_dir is not None:
            artifacts_dir.mkdir(parents=True, exist_ok=True)
            for task, task_score in scores.items():
                stem = artifacts_dir / f"confusion_{name}_{task}"
                stem.with_suffix(".json").write_text(
                    json.dumps({"classes": task_score["classes"], "matrix": task_score["confusion_matrix"]}) + "\n"
                )
                image = confusion_matrix_image(np.array(task_score["confusion_matrix"]), task_score["classes"], f"{name}: {task}")
                save_png(image, stem.with_suffix(".png"))
    metrics["parameters"] = int(model.count_params())
    metrics["inference_ms_per_image"] = inference_milliseconds(model, data.image_size)
    agreement = pseudo_label_agreement(model, run_dir, data.batch_size)
    if agreement is not None:
        metrics["not_accuracy_agreement_with_own_pseudo_labels"] = agreement
    metrics["headline"] = headline(metrics["test_sets"])
    metrics["provenance"] = provenance()
    if artifacts_dir is not None:
        # Per-image right or wrong, for paired tests between runs scored on the same images.
        with atomic_path(artifacts_dir / CORRECT_FILE) as temporary, open(temporary, "wb") as file:
            np.savez_compressed(file, **correct)
    return Evaluation(metrics, samples, correct)


def read_correct(artifacts_dir: Path) -> dict[str, np.ndarray]:
    """The per-image correctness that `evaluate_run` wrote into `artifacts_dir`."""
    with np.load(Path(artifacts_dir) / CORRECT_FILE) as saved:
        return {key: saved[key] for key in saved.files}


def write_metrics(metrics: dict, path: Path) -> None:
    write_json(path, metrics)
