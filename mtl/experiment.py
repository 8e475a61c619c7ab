"""One experiment end to end: a new run directory, teachers if needed, training, evaluation, metrics."""

import json
import shutil
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

from mtl import approaches, budget, plugins, pseudo_labels, training
from mtl.approaches.base import Approach, Stage
from mtl.config import ExperimentConfig, TrainConfig, load_config, merge
from mtl.data.pipeline import ExperimentData, test_sets
from mtl.distribute import strategy_for
from mtl.errors import UserError
from mtl.evaluate import Evaluation, evaluate_run, write_metrics
from mtl.models import backbones
from mtl.models.cost import forward_multiply_adds
from mtl.models.build import inference_model
from mtl.provenance import provenance
from mtl.runs import (
    CONFIG_FILE, METRICS_FILE, MODEL_FILE, atomic_path, create_run, evaluation_dir, replaced_folder, run_lock,
    write_json,
)
from mtl.tasks import TASKS

TEACHERS_DIR = "teachers"  # inside a run or search directory, when no options.teachers is given
BACKUP_DIR = "backup"  # inside a run directory: the checkpoint of the stage in training
BUDGET_LOGS = "budget"  # inside a run's logs/: validation accuracy against faces seen


def seed_everything(config: TrainConfig) -> None:
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def validate(config: ExperimentConfig) -> Approach:
    """The config's approach, once it has accepted the config: before any folder is made or model trained."""
    approach = approaches.get(config.approach.type)
    approach.check(config)
    backbones.check_image_size(config.model, config.data)
    if config.options.teachers and approach.needs_teachers(config):
        pseudo_labels.require_teacher(config.options.teachers)  # not first found with a run folder already made
    return approach


def train_approach(approach: Approach, config: ExperimentConfig, run_dir: Path, data: ExperimentData) -> float:
    """Fit the approach's stages in order into `run_dir`; saves each network and the inference model.

    Each stage trains as `train.budget` plans it (`mtl.budget`). A stage that a previous,
    interrupted call finished is loaded, not fitted again; the stage it was fitting continues
    from its last finished epoch (`backup/<stage>`). Returns the training seconds those earlier
    calls spent that this one did not spend again (0 for a run trained in one go).
    """
    run_dir = Path(run_dir)
    earlier_seconds = 0.0
    merged_dir = cross_labelled_images(config, run_dir, data) if approach.needs_teachers(config) else None
    # Networks, their trainers and optimizers are made inside the strategy's scope, so that their
    # variables are mirrored on every replica (and every worker).
    with strategy_for(config.train).scope():
        stages = approach.stages(config)
        batches = {stage.name: approach.training_batches(config, stage.name, data, merged_dir) for stage in stages}
        demands = [stage_demand(approach, config, stage, data, batches[stage.name][1]) for stage in stages]
        for stage, demand in zip(stages, demands):
            network_file = run_dir / f"{stage.network.name}.keras"
            summary_file = run_dir / f"{stage.name}_training.json"
            if network_file.is_file() and summary_file.is_file():
                print(f"{stage.network.name} was trained by an earlier run of this command; loading it.", flush=True)
                stage.network.set_weights(keras.models.load_model(network_file).get_weights())
                earlier_seconds += json.loads(summary_file.read_text()).get("training_seconds", 0.0)
                continue
            stage_batches, _ = batches[stage.name]
            timed = training.seconds_per_step(stage.trainer, stage_batches) if config.train.budget.kind == "seconds" else None
            plan = budget.plan(config.train.budget, demands, demand, timed)
            summary = fit_stage(
                config, stage, stage_batches, data, plan, run_dir / "logs" / stage.name, backup_dir=run_dir / BACKUP_DIR / stage.name
            )
            summary["budget"] = budget.spending_record(demand, plan, summary)
            earlier_seconds += summary["earlier_seconds"]
            save_model(stage.network, network_file)
            write_json(summary_file, summary)
    model = inference_model([stage.network for stage in stages], config.data, config.model.flip_test_time_augmentation)
    save_model(model, run_dir / MODEL_FILE)
    shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)  # every stage is saved: nothing left to resume
    return earlier_seconds


def stage_demand(approach: Approach, config: ExperimentConfig, stage: Stage, data: ExperimentData, steps_per_epoch: int) -> budget.Demand:
    """What one step of the stage draws and costs: what its budget is converted through."""
    batch_size = config.data.batch_size
    return budget.Demand(
        stage=stage.name,
        epochs=approach.epochs(config, stage.name),
        steps_per_epoch=steps_per_epoch,
        faces_per_step={task: share * batch_size for task, share in approach.task_shares(config, stage.name, data).items()},
        multiply_adds_per_step=budget.TRAINING_PER_FORWARD * forward_multiply_adds(stage.network) * batch_size,
    )


def fit_stage(
    config: ExperimentConfig,
    stage: Stage,
    batches: tf.data.Dataset,
    data: ExperimentData,
    plan: budget.Plan,
    log_dir: Path | None,
    initial_epoch: int = 0,
    extra_callbacks=(),
    backup_dir: Path | None = None,
) -> dict:
    """Fit one stage on its batches as `plan` says, validated on both tasks' true labels: the one fit path of train and tune."""
    what = f"{plan.steps_per_epoch} steps an epoch"
    if plan.steps_per_evaluation != plan.steps_per_epoch:
        what = f"{plan.steps} steps ({plan.steps / plan.steps_per_epoch:.2f} epochs), validated every {plan.steps_per_evaluation}"
    print(f"Training {stage.network.name} ({stage.name}): {what}.", flush=True)
    return training.fit(
        stage.trainer,
        batches,
        data.validation(),
        config.train,
        plan,
        log_dir,
        extra_callbacks=extra_callbacks,
        initial_epoch=initial_epoch,
        verbose=1 if sys.stdout.isatty() else 2,
        backup_dir=backup_dir,
    )


def save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as temporary:
        model.save(temporary)


def teachers(config: ExperimentConfig, directory: Path, data: ExperimentData) -> Path:
    """A run of the separate models that cross-label: `options.teachers`, or one trained into `directory/teachers`.

    Teachers left finished by an earlier, interrupted run in `directory` are reused.
    """
    if config.options.teachers:
        plugins.load_for_run(Path(config.options.teachers))
        return Path(config.options.teachers)
    run_dir = Path(directory) / TEACHERS_DIR
    if not (run_dir / MODEL_FILE).is_file():
        teacher_approach = approaches.teacher()
        budget = config.train.budget.kind
        length = f"{config.train.epochs} epochs each" if budget == "epochs" else f"under the {budget} budget"
        print(f"Training the teachers first: the {teacher_approach.name} gender and emotion models ({length}, "
              f"into {run_dir}), whose answers label the other task's images; options.teachers=RUN_DIR "
              "reuses a finished one instead.", flush=True)
        # Teachers learn with the plain mean: a group-robust teacher would need teachers of its own.
        teacher_config = merge(config, {"approach": teacher_approach.name, "options": {"robust": "none"}})
        run_dir.mkdir(parents=True, exist_ok=True)
        # Like any run, its config and plug-ins beside it: another process can evaluate it, or reuse it as
        # options.teachers with a plug-in backbone, without naming --plugin.
        write_json(run_dir / CONFIG_FILE, teacher_config.to_dict())
        plugins.record(run_dir)
        train_approach(teacher_approach, teacher_config, run_dir, data)
    return run_dir


def cross_labelled_images(config: ExperimentConfig, directory: Path, data: ExperimentData, name: str = pseudo_labels.MERGED_DIR) -> Path:
    """Both training splits labelled by the teachers into `directory/name`: made once, then reused.

    A folder left half-written by an interrupted run (no summary yet) is made again.
    """
    merged_dir = Path(directory) / name
    if (merged_dir / pseudo_labels.SUMMARY_FILE).is_file():
        print(f"Reusing the cross-labelled images in {merged_dir}.", flush=True)
        return merged_dir
    shutil.rmtree(merged_dir, ignore_errors=True)
    teacher = pseudo_labels.load_teacher(teachers(config, directory, data))
    summary = pseudo_labels.cross_label(teacher, data, merged_dir)
    print(f"Cross-labelled {summary['examples']} images into {merged_dir}.", flush=True)
    for line in pseudo_labels.confound_lines(summary["confound"]):
        print(line, flush=True)
    return merged_dir


def open_run(run_dir: Path, config: ExperimentConfig) -> Path:
    """A new run directory, or one that an interrupted run of the same config left unfinished (to resume)."""
    run_dir = Path(run_dir)
    saved = run_dir / CONFIG_FILE
    if saved.is_file() and not (run_dir / METRICS_FILE).is_file():
        if load_config(saved).to_dict() != config.to_dict():
            raise UserError(
                f"Run directory '{run_dir}' holds an unfinished run of another config; choose another --name."
            )
        print(f"Resuming the unfinished run in {run_dir}.", flush=True)
        return run_dir
    return create_run(run_dir, config)


def validation_accuracy(run_dir: Path) -> dict:
    """Each task's validation accuracy at the chosen epoch of the stage that answers it: what selection may use."""
    found = {}
    for summary in stage_summaries(run_dir):
        for key, value in summary.get("best_validation", {}).items():
            if key.endswith("_accuracy") and key != "val_mean_accuracy":
                found[f"validation_{key.removeprefix('val_')}"] = value
    per_task = [found[f"validation_{task}_worst_group_accuracy"] for task in TASKS if f"validation_{task}_worst_group_accuracy" in found]
    if per_task and "validation_worst_group_accuracy" not in found:  # networks fitted one task at a time
        found["validation_worst_group_accuracy"] = min(per_task)
    return found


def stage_summaries(run_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(Path(run_dir).glob("*_training.json"))]


def budget_record(config: ExperimentConfig, approach: Approach, run_dir: Path) -> dict:
    """What the run's training spent (its stages', and its teachers' where it needs them) and its accuracy at each
    validation point of its budget: the curves of `mtl compare`."""
    summaries = stage_summaries(run_dir)
    teachers = None
    if approach.needs_teachers(config):
        teacher_dir = Path(config.options.teachers) if config.options.teachers else Path(run_dir) / TEACHERS_DIR
        teachers = budget.added(*(summary.get("budget", {}).get("spent", {}) for summary in stage_summaries(teacher_dir)))
    return budget.run_record(config.train.budget.kind, summaries, teachers)


def log_budget_curves(log_dir: Path, record: dict) -> None:
    """Validation accuracy against the faces of its task seen (teachers' included), as TensorBoard scalars:
    one chart per task in which every run of a comparison overlays."""
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for task, points in record["curves"].items():
            for point in points:
                step = int(point["faces_with_teachers"])
                tf.summary.scalar(f"{task}_accuracy_by_faces_seen", point["val_accuracy"], step=step)
                if point["val_worst_group_accuracy"] is not None:
                    tf.summary.scalar(f"{task}_worst_group_accuracy_by_faces_seen", point["val_worst_group_accuracy"], step=step)
    writer.close()


def reference_budget(config: ExperimentConfig) -> dict[str, float]:
    """What `train.epochs` epochs of `config`'s stages cost in every unit (`mtl.budget.reference`), without training:
    the budget a comparison's baseline sets for every variant."""
    approach = validate(config)
    if approach.needs_teachers(config):
        raise UserError(
            f"A comparison's budget is its baseline's cost, so the baseline must train without teachers; "
            f"{config.approach.type} with these options needs them: choose another baseline."
        )
    data = ExperimentData.load(config.data, config.train.seed)
    demands = [
        stage_demand(approach, config, stage, data, approach.training_batches(config, stage.name, data, None)[1])
        for stage in approach.stages(config)
    ]
    return budget.reference(demands)


def train_and_evaluate(config: ExperimentConfig, run_dir: Path, evaluate: bool = True) -> Evaluation | None:
    """Train `config.approach` into a new `run_dir`, then score it on the test sets.

    Returns the evaluation (its metrics with `training_seconds` and the validation accuracies
    added), or None when told not to evaluate; writes config.json, model.keras, TensorBoard logs
    and metrics.json into the run directory.
    """
    approach = validate(config)
    made_by = provenance()  # the code as the run starts, even if the repository moves on meanwhile
    data = ExperimentData.load(config.data, config.train.seed)  # validates the data before a run is made
    if evaluate:
        test_sets(config.data)  # and the test sets, so a missing one is not found only after training
    with run_lock(run_dir):  # the first write: from here on no other process writes this run
        run_dir = open_run(run_dir, config)
        plugins.record(run_dir)
        seed_everything(config.train)
        start = time.perf_counter()
        earlier_seconds = train_approach(approach, config, run_dir, data)
        # This process's seconds and what interrupted runs of the same command spent on what it kept
        # (cross-labelling done by those is not counted: it is not timed where it is kept).
        training_seconds = time.perf_counter() - start + earlier_seconds
        if not evaluate:
            return None
        # A resumed run may find figures of an evaluation that was interrupted: they are replaced whole.
        with replaced_folder(evaluation_dir(run_dir / METRICS_FILE)) as artifacts_dir:
            evaluation = evaluate_run(run_dir, artifacts_dir=artifacts_dir)
        metrics = evaluation.metrics
        metrics["training_seconds"] = round(training_seconds, 1)
        metrics["budget"] = budget_record(config, approach, run_dir)
        metrics.update(budget.headline(metrics["budget"]))
        log_budget_curves(run_dir / "logs" / BUDGET_LOGS, metrics["budget"])
        metrics["headline"].update(validation_accuracy(run_dir))
        metrics["provenance"] = made_by
        write_metrics(metrics, run_dir / METRICS_FILE)
        return evaluation
