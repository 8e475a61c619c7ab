"""A comparison as TensorBoard shows it: HParams rows, the columns they fill, the results as text.

Under the comparison's root (TensorBoard's --logdir):
- `<variant>/seed-<k>/`: the run's HParams row, named `<short variant> s<k>`, its metric
  scalars under `hparams/<metric>` and a `test_metrics` text table of the same numbers;
- `<variant>/mean/`: the row of the variant's mean over its seeds, only with two seeds or more
  (at one seed it would copy the `seed-0` row);
- `SUMMARY_RUN/`: the HParams columns and a `results` text table (`results.md`).
Accuracies are in percent everywhere, as in `results.md`. Every call rewrites all of these, so
a resumed comparison shows the rows and columns of every run it has, never stale ones.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import tensorflow as tf

from mtl.dashboard.hparams import DEFAULT_VIEW_SIZE, clear, write_hparams, write_hparams_config, writer

# Not a name a variant takes (variants are plain names), and it says what the run holds.
SUMMARY_RUN = "_comparison"
MEAN_RUN = "mean"
METRIC_PREFIX = "hparams/"  # one group of cards in the Scalars and Time Series dashboards
# The dashboard's Trial ID column is 10em wide and cuts longer names with an ellipsis: about
# 14 characters fit ("multitask_mask..." was what it showed of "multitask_masked/seed-0").
TRIAL_ID_CHARACTERS = 14
# What tells the rows apart, ticked before the user ticks anything.
SHOWN = ("variant", "seed", "approach", "pseudo_labels", "robust")[:DEFAULT_VIEW_SIZE]


def in_percent(metric: str) -> bool:
    """Whether a metric is shown ×100, as `results.md` shows it (its accuracies)."""
    return metric.endswith("accuracy")


def short_names(variants: Sequence[str], room: int = TRIAL_ID_CHARACTERS - len(" mean")) -> dict[str, str]:
    """A distinct name of at most `room` characters per variant, as whole as fits.

    The name itself; else its leading words cut to their initials ("multitask_masked" ->
    "m_masked"); else all initials ("multitask_utk_balanced" -> "mub"); a number is added where
    two would be the same.
    """
    names = {}
    for variant in variants:
        words = variant.split("_")
        name = variant
        for cut in range(1, len(words)):
            if len(name) <= room:
                break
            name = "_".join([*(word[:1] for word in words[:cut]), *words[cut:]])
        if len(name) > room:
            name = "".join(word[:1] for word in words)[:room]
        candidate, number = name, 2
        while candidate in names.values():
            candidate = f"{name[: room - len(str(number))]}{number}"
            number += 1
        names[variant] = candidate
    return names


def write_comparison(
    root: str | Path,
    runs: Sequence[Mapping],
    means: Sequence[Mapping],
    columns: Sequence[str],
    metric_names: Mapping[str, str],
    results_markdown: str | None = None,
) -> None:
    """Write the whole comparison's dashboard under `root`, replacing what an earlier call wrote.

    `runs` are per-seed result rows (`"variant": "<variant>/seed-<k>"`, the `columns`, the
    metrics of `metric_names`, None where not measured); `means` are per-variant rows
    (`"variant"`, `"seeds"`, `"<metric>_mean"`), written as rows only with two seeds or more.
    """
    root = Path(root)
    variants = list(dict.fromkeys(row["variant"].rpartition("/")[0] for row in runs))
    short = short_names(variants)
    reported = [key for key in metric_names if any(row.get(key) is not None for row in runs)]
    hparam_values: dict[str, list] = {"variant": [], **{column: [] for column in columns}}

    for row in runs:
        variant, _, seed_folder = row["variant"].rpartition("/")
        hparams = {"variant": variant, **{column: row[column] for column in columns}}
        values = {key: row[key] for key in reported if row.get(key) is not None}
        seed_index = seed_folder.removeprefix("seed-")
        _write_row(root / row["variant"], hparams, values, f"{short[variant]} s{seed_index}", metric_names)
        for name, value in hparams.items():
            hparam_values[name].append(value)

    for row in means:
        if row["seeds"] < 2:  # the mean of one seed is a copy of its row
            continue
        mean_dir = root / row["variant"] / MEAN_RUN
        hparams = {"variant": row["variant"], **{column: row.get(column, MEAN_RUN) for column in columns}}
        values = {key: row[f"{key}_mean"] for key in reported if row.get(f"{key}_mean") is not None}
        _write_row(mean_dir, hparams, values, f"{short[row['variant']]} {MEAN_RUN}", metric_names)
        for name, value in hparams.items():
            hparam_values[name].append(value)

    summary = root / SUMMARY_RUN
    clear(summary)
    write_hparams_config(
        summary,
        {name: _domain(values) for name, values in hparam_values.items()},
        {METRIC_PREFIX + key: _display_name(key, metric_names) for key in reported},
        shown=[name for name in SHOWN if name in hparam_values],
        descriptions={
            "variant": "the comparison's variant; the Trial ID is its short name and the seed",
            "seed": f"the training seed, or '{MEAN_RUN}': the variant's mean over its seeds",
            **{METRIC_PREFIX + key: "in percent (×100), as in results.md" for key in reported if in_percent(key)},
        },
    )
    if results_markdown is not None:
        write_markdown(summary, "results", results_markdown)


def _write_row(
    logdir: Path, hparams: Mapping, values: Mapping[str, float], trial_id: str, metric_names: Mapping[str, str]
) -> None:
    """One HParams row, its metric scalars in the dashboard's units and the same numbers as a text table."""
    clear(logdir)
    shown = {key: value * 100 if in_percent(key) else value for key, value in values.items()}
    write_hparams(logdir, hparams, {METRIC_PREFIX + key: value for key, value in shown.items()}, trial_id=trial_id)
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {_display_name(key, metric_names)} | {_format(key, value)} |" for key, value in shown.items()]
    write_markdown(logdir, "test_metrics", "\n".join(lines))


def _domain(values: list) -> list:
    """The distinct values, for the dashboard's filter; none (any value) where their types differ."""
    distinct = list(dict.fromkeys(values))
    return distinct if len({type(value) for value in distinct}) == 1 else []


def _display_name(key: str, metric_names: Mapping[str, str]) -> str:
    return f"{metric_names[key]}, %" if in_percent(key) else metric_names[key]


def _format(key: str, value: float) -> str:
    return f"{value:.0f}" if key == "parameters" else f"{value:.2f}"


def write_markdown(logdir: str | Path, name: str, markdown: str) -> None:
    """Write `markdown` as text summary `name` at step 0 (TensorBoard's Text tab renders its tables)."""
    text_writer = writer(logdir)
    try:
        with text_writer.as_default():
            tf.summary.text(name, markdown, step=0)
        text_writer.flush()
    finally:
        text_writer.close()
