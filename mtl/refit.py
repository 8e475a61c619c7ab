"""Refit a trained run's task heads on faces it never trained on, every group weighing the same.

Deep Feature Reweighting (Kirichenko, Izmailov and Wilson, ICLR 2023, "Last Layer Re-Training is
Sufficient for Robustness to Spurious Correlations"): a backbone trained on confounded data already
holds what tells the rare groups apart; its head leans on the shortcut ("smiling means female")
because those groups are rare in training. A head refitted by logistic regression on the frozen
features of held-out faces, with each group given the same total weight, leans on it less.

A head's group of a face is its true class x the other task's answer x its source, as in
`mtl.groups`, and optionally a source's own attributes (UTKFace's age band). No face here has both
labels, so the other task's answer is the run's own model's, or a labeller's (`--teachers`: a
network whose other head is weak, as `separate`'s emotion network is after a short training, calls
nearly every face happy and leaves the rare groups next to empty). The held-out faces are the run's
validation split, which its training only used to choose an epoch. That split is halved, stratified
by group: each candidate (a balance power `alpha`, each face weighing 1 / group size ** alpha, and
an inverse regularisation `C`; and the trained head itself) is fitted on one half and scored on the
other by worst-group accuracy, then mean accuracy. The chosen one is fitted again on the whole
split, as DFR does; the trained head stays where no refit lifts its worst group by more than two
standard errors. Faces and their mirror images are both fitted; a candidate answers as the saved
model does (the mean over the face and its mirror image where the model averages them).
"""

import itertools
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from mtl import budget, plugins, pseudo_labels
from mtl.config import ExperimentConfig
from mtl.data.pipeline import ExperimentData, evaluation_batches
from mtl.data.sources import SOURCE, ImageSource
from mtl.errors import UserError
from mtl.evaluate import MIN_GROUP_IMAGES, OTHER_TASK, evaluate_run, write_metrics
from mtl.experiment import save_model
from mtl.models.build import Mirror, load_inference_model
from mtl.runs import (EVALUATION_DIR, METRICS_FILE, MODEL_FILE, REFIT_FILE, TRAINED_HEAD, create_run,
                      remove_contents, run_lock, write_json)
from mtl.tasks import CLASSES, EMOTION, GENDER, TASKS

ALPHAS = (0.0, 0.5, 1.0)
INVERSE_REGULARISATIONS = (0.01, 0.1, 1.0)
MIN_GAIN_STANDARD_ERRORS = 2.0  # how far a refit must lift the worst group to replace the trained head
SELECTION_SEED = 0  # the split of the validation faces into a fitting half and a scoring half
OWN_MODEL = "the run's own model"  # refit.json's labeller of the other task when no teachers are given


@dataclass(frozen=True)
class HeadFaces:
    """One head's held-out faces: frozen features (and of the mirror images), true class, group, and
    the trained head's answer."""

    features: np.ndarray  # [faces, width]
    mirrored: np.ndarray  # [faces, width]
    labels: np.ndarray  # [faces] class index
    groups: np.ndarray  # [faces] group name, "female|sad|utkface_train"
    trained_answers: np.ndarray  # [faces, classes] the saved model's probabilities


@dataclass(frozen=True)
class Candidate:
    alpha: float | None  # None: the trained head
    inverse_regularisation: float | None

    @property
    def name(self) -> str:
        return TRAINED_HEAD if self.alpha is None else f"alpha={self.alpha:g}, C={self.inverse_regularisation:g}"


def candidates() -> list[Candidate]:
    return [Candidate(None, None)] + [Candidate(a, c) for a, c in itertools.product(ALPHAS, INVERSE_REGULARISATIONS)]


def head_layer(model: keras.Model, task: str) -> tuple[keras.Model, keras.layers.Dense]:
    """(network, its Dense head) answering `task` inside an inference model, or a UserError."""
    found = [(layer, layer.get_layer(task)) for layer in model.layers
             if isinstance(layer, keras.Model) and task in [inner.name for inner in layer.layers]]
    found = [(network, head) for network, head in found if isinstance(head, keras.layers.Dense)]
    if len(found) != 1:
        raise UserError(f"The model has no {task} head to refit (a four-class model answers both tasks from one "
                        "head); refitting takes a run of an approach with task heads, such as multitask or separate.")
    return found[0]


def averages_mirror(model: keras.Model) -> bool:
    return any(isinstance(layer, Mirror) for layer in model.layers)


def group_names(source: ImageSource, task: str, other_answers: np.ndarray, source_names: list[str],
                attributes: list[str]) -> np.ndarray:
    """Each face's group for a head of `task`: its class, the other task's answer, its source and `attributes`."""
    other = OTHER_TASK[task]
    columns = [np.array(CLASSES[task])[source.labels[task]], np.array(CLASSES[other])[other_answers],
               np.array(source_names)[source.labels[SOURCE]]]
    for attribute in attributes:
        columns.append(source.groups.get(attribute, np.full(len(source), "")))
    return np.array(["|".join(value for value in row if value) for row in zip(*columns)])


def held_out_faces(model: keras.Model, task: str, source: ImageSource, examples: tf.data.Dataset,
                   source_names: list[str], attributes: list[str], batch_size: int,
                   labeller: keras.Model | None = None) -> HeadFaces:
    """Features of `task`'s head for every face of a validation split (and its mirror image), with groups
    by the other task's answer of `labeller` (None: of `model` itself)."""
    network, head = head_layer(model, task)
    features_of = keras.Model(network.input, head.input)
    images, other = keras.Input(model.input_shape[1:]), OTHER_TASK[task]
    answers = model(images)
    # One model reads what the run's model says, so each batch is one call (and one traced function).
    reader = keras.Model(images, {"features": features_of(images),
                                  "mirrored": features_of(keras.ops.flip(images, axis=2)),
                                  "answers": answers[task], "other": answers[other]})
    read = {name: [] for name in reader.output}
    for batch, _ in evaluation_batches(examples, batch_size):
        outputs = reader.predict_on_batch(batch)
        if labeller is not None:
            outputs["other"] = labeller.predict_on_batch(batch)[other]
        for name, values in outputs.items():
            read[name].append(np.asarray(values))
    read = {name: np.concatenate(values) for name, values in read.items()}
    return HeadFaces(read["features"], read["mirrored"], source.labels[task].astype(int),
                     group_names(source, task, read["other"].argmax(axis=1), source_names, attributes),
                     read["answers"])


def balance_weights(groups: np.ndarray, alpha: float) -> np.ndarray:
    """Weights 1 / group size ** alpha, with mean 1: alpha 0 weighs faces alike, 1 weighs groups alike."""
    _, index, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weights = counts[index].astype(float) ** -alpha
    return weights / weights.mean()


def fit_head(faces: HeadFaces, indices: np.ndarray, candidate: Candidate, seed: int) -> LogisticRegression:
    """Logistic regression on the faces at `indices` and their mirror images, weighted as `candidate` says."""
    weights = balance_weights(faces.groups[indices], candidate.alpha)
    regression = LogisticRegression(C=candidate.inverse_regularisation, max_iter=5000, random_state=seed)
    regression.fit(np.concatenate([faces.features[indices], faces.mirrored[indices]]),
                   np.concatenate([faces.labels[indices]] * 2), sample_weight=np.concatenate([weights] * 2))
    return regression


def answers_of(regression: LogisticRegression | None, faces: HeadFaces, indices: np.ndarray, mirror: bool) -> np.ndarray:
    """Class answers at `indices`: the trained head's (None) or the regression's, as the saved model answers."""
    if regression is None:
        return faces.trained_answers[indices].argmax(axis=1)
    probabilities = regression.predict_proba(faces.features[indices])
    if mirror:
        probabilities = (probabilities + regression.predict_proba(faces.mirrored[indices])) / 2
    return probabilities.argmax(axis=1)


def group_accuracy(right: np.ndarray, groups: np.ndarray) -> dict:
    """Mean accuracy, and the worst group of at least MIN_GROUP_IMAGES faces (None where no group has them)."""
    cells = {name: float(right[groups == name].mean()) for name in np.unique(groups)
             if (groups == name).sum() >= MIN_GROUP_IMAGES}
    worst = min(cells, key=cells.get, default=None)
    return {"accuracy": float(right.mean()), "worst_group": worst,
            "worst_group_accuracy": cells[worst] if worst else None,
            "worst_group_images": int((groups == worst).sum()) if worst else None}


def choose(faces: HeadFaces, mirror: bool, seed: int) -> tuple[Candidate, list[dict]]:
    """The candidate with the best worst-group accuracy (then mean) on the scoring half, and every candidate's scores.

    A refit replaces the trained head only when it raises the worst group's accuracy by more than
    MIN_GAIN_STANDARD_ERRORS binomial standard errors of the trained head's worst group: with the
    few faces of a rare group, a smaller gain is as likely noise as not.
    """
    fitting, scoring = train_test_split(np.arange(len(faces.labels)), test_size=0.5, random_state=seed,
                                        stratify=_stratifiable(faces.groups))
    options, scored = candidates(), []
    for candidate in options:
        regression = None if candidate.alpha is None else fit_head(faces, fitting, candidate, seed)
        right = answers_of(regression, faces, scoring, mirror) == faces.labels[scoring]
        scored.append({"candidate": candidate.name, **asdict(candidate), **group_accuracy(right, faces.groups[scoring])})
    best = max(range(len(scored)), key=lambda i: (scored[i]["worst_group_accuracy"] or 0.0, scored[i]["accuracy"]))
    trained = scored[0]
    if trained["worst_group_accuracy"] is not None and best != 0:
        accuracy, images = trained["worst_group_accuracy"], trained["worst_group_images"]
        needed = MIN_GAIN_STANDARD_ERRORS * math.sqrt(accuracy * (1 - accuracy) / images)
        if scored[best]["worst_group_accuracy"] - accuracy <= needed:
            best = 0
    return options[best], scored


def _stratifiable(groups: np.ndarray) -> np.ndarray | None:
    """The groups as strata where each has two faces at least (a split needs one on each side), else None."""
    _, counts = np.unique(groups, return_counts=True)
    return groups if counts.min() >= 2 else None


def set_head(head: keras.layers.Dense, regression: LogisticRegression) -> None:
    """Give a softmax Dense head the regression's answers: for two classes, logits -z/2 and z/2 of z = w.x + b."""
    coefficients, intercepts = regression.coef_.astype(np.float32), regression.intercept_.astype(np.float32)
    if len(regression.classes_) == 2:
        kernel = np.stack([-coefficients[0], coefficients[0]], axis=1) / 2
        bias = np.array([-intercepts[0], intercepts[0]]) / 2
    else:
        kernel, bias = coefficients.T, intercepts
    head.set_weights([kernel, bias])


def refit_heads(model: keras.Model, config: ExperimentConfig, data: ExperimentData, heads: list[str],
                attributes: list[str], labeller: keras.Model | None = None) -> dict:
    """Refit `heads` of `model` in place on the validation splits of `data`, grouping faces by the other
    task's answer of `labeller` (None: `model`'s own); returns what `refit.json` records."""
    mirror = averages_mirror(model)
    record = {"method": "deep feature reweighting (Kirichenko et al. 2023): each head refitted by logistic "
                        "regression on the frozen features of the validation split, groups weighed alike",
              "attributes": list(attributes), "selection_seed": SELECTION_SEED,
              "min_gain_standard_errors": MIN_GAIN_STANDARD_ERRORS, "heads": {}}
    splits = {GENDER: data.gender_validation, EMOTION: data.emotion_validation}
    for task in heads:
        source = splits[task]
        if len(source) == 0 or len(np.unique(source.labels[task])) < len(CLASSES[task]):
            raise UserError(f"The {task} validation split holds no faces of every {task} class; nothing to refit on.")
    # Every head's faces are read before any head changes, so that one head's groups never come from the
    # other head's refit: refitting both heads groups them as refitting each alone does.
    faces_of = {task: held_out_faces(model, task, splits[task], data.images(splits[task]), data.source_names(task),
                                     attributes, config.data.batch_size, labeller)
                for task in heads}
    for task, faces in faces_of.items():
        chosen, scored = choose(faces, mirror, SELECTION_SEED)
        if chosen.alpha is not None:
            set_head(head_layer(model, task)[1], fit_head(faces, np.arange(len(faces.labels)), chosen, SELECTION_SEED))
        names, counts = np.unique(faces.groups, return_counts=True)
        record["heads"][task] = {
            "chosen": chosen.name, "faces": int(len(faces.labels)),
            "groups": {str(name): int(count) for name, count in zip(names, counts)},
            "candidates_on_the_scoring_half": scored,
        }
        print(f"{task} head: {scores_line(scored, chosen.name)}", flush=True)
    return record


def scores_line(scored: list[dict], chosen: str) -> str:
    """The trained head's and the best refit's scores on the scoring half, and which one stays; the worst
    group's size says how far to trust it (a group of a few dozen faces is mostly noise)."""
    def shown(row):
        worst = row["worst_group_accuracy"]
        if worst is None:
            return f"{row['candidate']} {row['accuracy']:.1%}"
        return (f"{row['candidate']} {row['accuracy']:.1%}, worst group {worst:.1%} {row['worst_group']} "
                f"({row['worst_group_images']} faces)")

    best_refit = max(scored[1:], key=lambda row: (row["worst_group_accuracy"] or 0.0, row["accuracy"]))
    verdict = ("the trained head stays: no refit lifts its worst group beyond the noise" if chosen == TRAINED_HEAD
               else f"refitted with {chosen}")
    return f"{verdict} (scoring half: {shown(scored[0])}; best refit {shown(best_refit)})"


def refit_run(run_dir: Path, output_dir: Path, config: ExperimentConfig, heads: list[str], attributes: list[str],
              replace_unfinished: bool = False, teachers: str | None = None):
    """A new run in `output_dir`: `run_dir`'s model with `heads` refitted, its config, `refit.json`, and its
    evaluation on every test set (metrics.json, with its cost: `run_dir`'s and the refit's). Returns the evaluation.

    `teachers`: a run (or `mtl/reference_labeller`) whose answers for the other task group the faces;
    None: the run's own model's. `replace_unfinished`: an `output_dir` without metrics.json (a refit that
    was killed) is emptied first, as `mtl compare` does on resuming; otherwise an existing run directory is refused.
    """
    unknown = [head for head in heads if head not in TASKS]
    if unknown or not heads:
        raise UserError(f"--heads takes {' and/or '.join(TASKS)}, comma-separated; got {','.join(heads) or 'nothing'}.")
    started = time.perf_counter()
    model = load_inference_model(Path(run_dir) / MODEL_FILE, config.data.image_size)
    for task in heads:
        head_layer(model, task)  # refused before the data is read
    # The teachers answer the same faces as the model, so they take its image size.
    labeller = None if teachers is None else pseudo_labels.load_teacher(teachers, config.data.image_size)
    data = ExperimentData.load(config.data, config.train.seed)  # the split the run was trained and selected with
    known = {attribute for split in (data.gender_validation, data.emotion_validation) for attribute in split.groups}
    missing = [attribute for attribute in attributes if attribute not in known]
    if missing:
        raise UserError(f"--attributes {missing[0]}: no training source has it; "
                        f"they have: {', '.join(sorted(known)) or 'none'} (UTKFace: age_band, ethnicity).")
    with run_lock(output_dir):
        if replace_unfinished and not (output_dir / METRICS_FILE).exists():
            remove_contents(output_dir)
        create_run(output_dir, config)
        record = refit_heads(model, config, data, heads, attributes, labeller)
        record["from_run"] = Path(run_dir).resolve().name  # a name, not this machine's path
        record["other_task_answers_from"] = labeller_name(teachers)
        save_model(model, output_dir / MODEL_FILE)
        write_json(output_dir / REFIT_FILE, record)
        plugins.record(output_dir)
        seconds = time.perf_counter() - started
        evaluation = evaluate_run(output_dir, config.data, artifacts_dir=output_dir / EVALUATION_DIR)
        evaluation.metrics.update(cost(Path(run_dir) / METRICS_FILE, seconds))
        write_metrics(evaluation.metrics, output_dir / METRICS_FILE)
    return evaluation


def labeller_name(teachers: str | Path | None) -> str:
    """How refit.json names whose answers grouped the faces: the run's own model (no teachers), the
    teachers as given where relative (`mtl/reference_labeller`), else their folder's name, never this
    machine's path."""
    if teachers is None:
        return OWN_MODEL
    return Path(teachers).name if Path(teachers).is_absolute() else str(teachers)


def cost(trained_metrics: Path, refit_seconds: float) -> dict:
    """A refitted run's cost as metrics.json states it: the refit's seconds, and what its trained run spent
    (its seconds, faces, steps and multiply-adds, where that run's metrics.json has them), the refit's added."""
    trained = json.loads(trained_metrics.read_text()) if trained_metrics.is_file() else {}
    found = {"refit_seconds": round(refit_seconds, 1)}
    if trained.get("training_seconds") is not None:
        found["training_seconds"] = round(trained["training_seconds"] + refit_seconds, 1)
    if "budget" in trained:  # what its network was trained with; the curves are the trained run's own
        found["budget"] = {key: value for key, value in trained["budget"].items() if key != "curves"}
        found.update(budget.headline(found["budget"]))
    return found
