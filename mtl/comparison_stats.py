"""The statistics of a comparison: per variant, the mean and spread over seeds of every compared
metric, and exact McNemar tests against the baseline on the same test images."""

import numpy as np
from scipy.stats import binomtest

from mtl.metrics import COMPARED

COMPARED_NAMES = [metric.name for metric in COMPARED]
# The accuracies measured on one test set and task: runs can be tested against each other image by image.
PAIRED = [metric for metric in COMPARED if metric.paired]


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar test: two-sided binomial p-value of the images that exactly one of two models gets right."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def summarise(runs: dict, baseline: str, columns: list[str]) -> list[dict]:
    """Per variant: its options, then mean and standard deviation over seeds of every metric, and p-values."""
    rows = []
    for name, results in runs.items():
        first_row, first_correct = results[0]
        row = {"variant": name, **{column: first_row[column] for column in columns if column != "seed"}}
        row["seeds"] = len(results)
        for key in COMPARED_NAMES:
            values = [result[key] for result, _ in results if result.get(key) is not None]
            row[f"{key}_mean"] = float(np.mean(values)) if values else None
            row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        for metric in PAIRED:
            pair = f"{metric.test_set}/{metric.task}"
            if name != baseline and pair in first_correct and pair in runs[baseline][0][1]:
                row[f"{metric.name}_p_vs_{baseline}"] = mcnemar_p(first_correct[pair], runs[baseline][0][1][pair])
        rows.append(row)
    return rows
