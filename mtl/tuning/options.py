"""The choices of `mtl tune` that its command line offers, importable without TensorFlow.

The argument parser reads these, so `mtl --help` answers without loading Keras Tuner.
"""

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
