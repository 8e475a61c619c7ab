"""The choices of `mtl tune` that its command line offers, importable without TensorFlow.

The argument parser reads these, so `mtl --help` answers without loading Keras Tuner.
"""

from dataclasses import dataclass, fields

TUNERS = ("hyperband", "bayesian", "random")
# Every approach is validated on both tasks (crosslabel's four classes through their marginals,
# separate's two networks side by side), so all three can be selected on the same numbers.
# The worst group is a task's true class x training source on the validation splits (mtl.training).
OBJECTIVES = (
    "val_mean_accuracy", "val_gender_accuracy", "val_emotion_accuracy",
    "val_worst_group_accuracy", "val_gender_worst_group_accuracy", "val_emotion_worst_group_accuracy",
)
DEFAULT_MAX_TRIALS = 10  # random and bayesian
DEFAULT_FACTOR = 3  # Hyperband's reduction factor


@dataclass(frozen=True)
class TuneRequest:
    """What one `mtl tune` asks beyond its experiment config: the command line's options, None where not given.

    `mtl.tuning.search.run_tuning` takes this, not argparse's namespace, so a search can be started
    from Python with only the fields it needs.
    """

    tuner: str | None = None
    objective: str | None = None
    max_epochs: int | None = None
    max_trials: int | None = None
    hp: tuple[str, ...] = ()  # NAME=SPEC ranges, as --hp gives them
    backbone: str | None = None  # --backbone: the space holds this one backbone
    directory: str | None = None  # default: RUNS_DIR/NAME, NAME defaulting to tune-APPROACH
    runs_dir: str = "runs"
    name: str | None = None
    overwrite: bool = False
    chief: bool = False
    worker: str | None = None
    oracle_ip: str | None = None
    oracle_port: int | None = None

    @classmethod
    def from_arguments(cls, arguments) -> "TuneRequest":
        """The request of parsed `mtl tune` arguments (an argparse namespace)."""
        given = {option.name: getattr(arguments, option.name, None) for option in fields(cls)}
        given["hp"] = tuple(given["hp"] or ())
        return cls(**{name: value for name, value in given.items() if value is not None})
