"""Runs as rows of TensorBoard's HParams dashboard: one row per run, columns declared once.

Layout this module expects (one TensorBoard --logdir per comparison):

    root_logdir/                 <- write_hparams_config(): the HParams columns
        run_a/                   <- write_hparams(): one HParams row + its metric scalars
        run_b/
        ...

Metric values are written as ordinary scalars in the run directory itself, so an HParams
metric named "gender/accuracy" is the scalar tag "gender/accuracy" of that run.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

HParamValue = str | float | int | bool


def write_hparams(
    run_logdir: str | Path,
    hparams: Mapping[str, HParamValue],
    metrics: Mapping[str, float],
    step: int = 0,
    *,
    trial_id: str | None = None,
) -> None:
    """Record one run as one row of the HParams dashboard.

    Writes, into event files under `run_logdir`, the run's HParams session summary with
    `hparams`, and one scalar per entry of `metrics` under exactly that tag at `step`.
    The HParams plugin takes each metric's last scalar (highest step) as the row's value.
    Scalars are float32 (TensorBoard's scalar format), so values read back are rounded to
    float32; ints and floats in `hparams` are both read back as floats.

    `trial_id` names the row's session group; runs with the same trial id are merged into
    one row with averaged metrics. It defaults to the absolute path of `run_logdir`, so
    every run directory is its own row even when two runs share all their hparams.
    """
    run_logdir = Path(run_logdir)
    # The plugin's own default trial id is a hash of the hparam values, which would
    # silently average e.g. two seeds of the same configuration into one row.
    group = trial_id if trial_id is not None else str(run_logdir.resolve())
    writer = tf.summary.create_file_writer(str(run_logdir))
    try:
        with writer.as_default():
            hp.hparams(dict(hparams), trial_id=group)
            for tag, value in metrics.items():
                tf.summary.scalar(tag, float(value), step=step)
        writer.flush()
    finally:
        writer.close()


def write_hparams_config(
    root_logdir: str | Path,
    hparam_names_and_values: Mapping[str, Sequence[HParamValue]],
    metric_names: Mapping[str, str],
) -> None:
    """Declare the HParams dashboard's columns for all runs under `root_logdir`.

    `hparam_names_and_values` maps each hparam to the values it may take (an empty list:
    any value); `metric_names` maps each metric tag, as given to write_hparams(), to the
    name the dashboard shows. Once this is written the dashboard shows exactly these
    columns: hparams or metrics of a run that are not listed here are not shown.
    """
    columns = [
        hp.HParam(name, hp.Discrete(_same_type(name, values))) if values else hp.HParam(name)
        for name, values in hparam_names_and_values.items()
    ]
    metrics = [hp.Metric(tag, display_name=display) for tag, display in metric_names.items()]
    writer = tf.summary.create_file_writer(str(root_logdir))
    try:
        with writer.as_default():
            hp.hparams_config(hparams=columns, metrics=metrics)
        writer.flush()
    finally:
        writer.close()


def _same_type(name: str, values: Sequence[HParamValue]) -> list[HParamValue]:
    """The values as one Python type, as hp.Discrete requires; ints among floats become floats."""
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    is_number = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in values]
    if all(is_number) and any(isinstance(v, float) for v in values):
        return [float(v) for v in values]
    if len({type(v) for v in values}) > 1:
        raise ValueError(f"hparam {name!r}: values of mixed types {values!r}")
    return values
