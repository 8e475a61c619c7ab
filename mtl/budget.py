"""How long each stage trains: a budget of epochs, faces seen per task, steps, multiply-adds or seconds.

Comparing approaches at equal epochs compares unequal training: the two-head model's epoch
draws from both datasets, a separate model's from one. `train.budget.kind` names the unit
that is held equal instead:

- `epochs`: every stage trains `train.epochs` passes over its own batches (the default, as before);
- `examples`: every task's faces drawn from its training sets, summed over the stages;
- `steps`: optimizer steps, summed over the stages;
- `flops`: training multiply-adds (three times the network's forward multiply-adds per face);
- `seconds`: wall-clock seconds of training, turned into steps by timing a few steps first.

The amount is the budget's own field (`train.budget.gender_faces`, `steps`, ...), or, when
null, what `train.epochs` epochs of this config's own stages cost in that unit. `mtl compare`
fills the amounts in from its baseline variant, so that every variant gets the same. Outside
`epochs` a stage is validated at `train.budget.points` evenly spaced points of its share, which
gives the accuracy-against-budget curves. Stages of one approach split a budget as they split
`train.epochs`, in proportion to their epochs' cost.

Nothing here imports TensorFlow: the runner measures the stages, this module does the sums.
"""

from dataclasses import dataclass

from mtl.errors import UserError
from mtl.tasks import TASKS

KINDS = ("epochs", "examples", "steps", "flops", "seconds")
TRAINING_PER_FORWARD = 3  # backward through activations and weights costs about twice the forward pass
AGREEMENT = 0.01  # how far apart two tasks' step counts may be under `examples` (rounding of the share)


@dataclass(frozen=True)
class Demand:
    """What one stage draws: the unit every budget is converted through."""

    stage: str
    epochs: int  # what the epochs budget gives it (train.epochs, or four_class_epochs)
    steps_per_epoch: int  # one pass over its batches
    faces_per_step: dict[str, float]  # task -> faces of that task's training sets in one batch
    multiply_adds_per_step: float  # training multiply-adds of one batch


@dataclass(frozen=True)
class Plan:
    """How one stage trains: `evaluations` Keras epochs of `steps_per_evaluation` steps, validated after each."""

    stage: str
    evaluations: int
    steps_per_evaluation: int
    steps_per_epoch: int  # one pass over its batches: the unit of warm-up and weight averaging

    @property
    def steps(self) -> int:
        return self.evaluations * self.steps_per_evaluation


def reference(demands: list[Demand]) -> dict[str, float]:
    """What `train.epochs` epochs of these stages cost, in every unit but seconds."""
    totals = {f"{task}_faces": 0.0 for task in TASKS} | {"steps": 0.0, "flops": 0.0}
    for demand in demands:
        steps = demand.epochs * demand.steps_per_epoch
        totals["steps"] += steps
        totals["flops"] += steps * demand.multiply_adds_per_step
        for task, faces in demand.faces_per_step.items():
            totals[f"{task}_faces"] += steps * faces
    return {key: round(value) for key, value in totals.items()}


def amounts(budget, demands: list[Demand]) -> dict[str, float]:
    """The budget's amounts: those its config sets, the others from `reference` (seconds has none)."""
    derived = reference(demands)
    fields = [f"{task}_faces" for task in TASKS] + ["steps", "flops", "seconds"]
    return {key: getattr(budget, key) if getattr(budget, key) is not None else derived.get(key) for key in fields}


def plan(budget, demands: list[Demand], demand: Demand, seconds_per_step: float | None = None) -> Plan:
    """How `demand`'s stage trains under `budget` (a `BudgetConfig`), the approach's stages being `demands`.

    A seconds budget needs the stage's measured `seconds_per_step`.
    """
    if budget.kind == "epochs":
        return Plan(demand.stage, demand.epochs, demand.steps_per_epoch, demand.steps_per_epoch)
    steps = stage_steps(budget, demands, demand, seconds_per_step)
    # Equal parts (Keras epochs), so the total is off by at most half a part per point: a few steps.
    return Plan(demand.stage, budget.points, max(1, round(steps / budget.points)), demand.steps_per_epoch)


def stage_steps(budget, demands: list[Demand], demand: Demand, seconds_per_step: float | None) -> float:
    """The optimizer steps of `demand`'s stage that spend its share of the budget."""
    total = amounts(budget, demands)
    epoch_costs = {d.stage: d.epochs * d.steps_per_epoch for d in demands}
    share = epoch_costs[demand.stage] / sum(epoch_costs.values())  # the stage's share, as under train.epochs
    if budget.kind == "steps":
        return share * total["steps"]
    if budget.kind == "flops":
        flops_costs = {d.stage: epoch_costs[d.stage] * d.multiply_adds_per_step for d in demands}
        return flops_costs[demand.stage] / sum(flops_costs.values()) * total["flops"] / demand.multiply_adds_per_step
    if budget.kind == "seconds":
        if total["seconds"] is None:
            raise UserError("A seconds budget needs its amount: set train.budget.seconds (seconds of training).")
        return share * total["seconds"] / seconds_per_step
    return steps_for_faces(demands, demand, total)


def steps_for_faces(demands: list[Demand], demand: Demand, total: dict[str, float]) -> float:
    """Under `examples`: the steps at which the stage has drawn every task's budget of faces.

    Each task's faces must come from one stage, and a stage drawing two tasks must draw them in
    the budget's ratio, else one task would see more faces than the other's budget allows.
    """
    for task in demand.faces_per_step:
        drawing = [d.stage for d in demands if d.faces_per_step.get(task)]
        if len(drawing) > 1:
            raise UserError(f"A budget of examples needs each task's faces from one stage; {task} faces come from {', '.join(drawing)}.")
    needed = {task: total[f"{task}_faces"] / faces for task, faces in demand.faces_per_step.items() if faces}
    if not needed:
        raise UserError(f"Stage {demand.stage} draws no labelled faces, so a budget of examples cannot size it.")
    low, high = min(needed.values()), max(needed.values())
    if high > low * (1 + AGREEMENT):
        wanted = {task: total[f"{task}_faces"] for task in needed}
        emotion_share = wanted.get("emotion", 0) / sum(wanted.values())
        raise UserError(
            f"Under a budget of examples stage {demand.stage} would see its tasks' faces in another ratio than the "
            f"budget's ({', '.join(f'{task} {round(faces)}' for task, faces in wanted.items())}); "
            f"set data.emotion_proportion={emotion_share:.4f}, or use budget flops or steps."
        )
    return high


def spent(demand: Demand, steps: int) -> dict[str, float]:
    """What `steps` steps of a stage spend, in every unit but seconds."""
    faces = {f"{task}_faces": round(steps * demand.faces_per_step.get(task, 0)) for task in TASKS}
    return faces | {"steps": steps, "flops": steps * demand.multiply_adds_per_step}


def spending_record(demand: Demand, plan: Plan, summary: dict) -> dict:
    """What a fitted stage spent in all (early stopping may end it before its plan), and at each validation point."""
    evaluations = len(summary["history"].get("loss", [])) or plan.evaluations
    seconds = summary["training_seconds"]
    points = [
        spent(demand, k * plan.steps_per_evaluation) | {"seconds": round(seconds * k / evaluations, 1)}
        for k in range(1, evaluations + 1)
    ]
    return {"planned_steps": plan.steps, "spent": points[-1], "points": points}


def added(*spendings: dict[str, float]) -> dict[str, float]:
    """The sum of several stages' (or runs') spendings."""
    keys = dict.fromkeys(key for spending in spendings for key in spending)
    return {key: sum(spending.get(key, 0) for spending in spendings) for key in keys}


def run_record(kind: str, summaries: list[dict], teachers: dict | None) -> dict:
    """A run's budget: what its stages spent, with its teachers' cost where it needed teachers (a four-class
    model cannot exist without them), and per task its validation accuracy against what it had spent."""
    spent = added(*(summary["budget"]["spent"] for summary in summaries if "budget" in summary))
    curves = {}
    for summary in summaries:
        points = summary.get("budget", {}).get("points", [])
        for task in TASKS:
            accuracies = summary["history"].get(f"val_{task}_accuracy")
            if not accuracies or not points:
                continue
            worst = summary["history"].get(f"val_{task}_worst_group_accuracy", [None] * len(accuracies))
            curves[task] = [
                point | {"val_accuracy": accuracy, "val_worst_group_accuracy": worst_group}
                for point, accuracy, worst_group in zip(points, accuracies, worst)
            ]
    record = {"kind": kind, "spent": spent, "curves": curves}
    if teachers is not None:
        record |= {"teachers": teachers, "spent_with_teachers": added(spent, teachers)}
    for task, points in curves.items():  # the cost of each point with the teachers' (0 without teachers)
        for point in points:
            point["faces_with_teachers"] = point[f"{task}_faces"] + (teachers or {}).get(f"{task}_faces", 0)
    return record


# The run's cost as `metrics.json` states it beside the accuracies (mtl.metrics declares them).
HEADLINE = {
    "gender_faces_seen": "gender_faces",
    "emotion_faces_seen": "emotion_faces",
    "training_steps": "steps",
    "training_multiply_adds": "flops",
}


def headline(record: dict) -> dict:
    """The run's cost in every unit, and its multiply-adds with its teachers' (theirs count: it needs them)."""
    found = {name: record["spent"].get(key) for name, key in HEADLINE.items()}
    found["training_multiply_adds_with_teachers"] = record.get("spent_with_teachers", record["spent"]).get("flops")
    return found
