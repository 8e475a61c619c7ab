"""Runs as rows of TensorBoard's HParams dashboard: one row per run, columns declared once.

Layout this module expects (one TensorBoard --logdir per comparison):

    root_logdir/                 <- nothing here: TensorBoard would list it as a run named "."
        summary_run/             <- write_hparams_config(): the HParams columns (any run may hold them)
        run_a/                   <- write_hparams(): one HParams row + its metric scalars
        run_b/
        ...

Metric values are written as ordinary scalars in the run directory itself, so an HParams
metric named "gender/accuracy" is the scalar tag "gender/accuracy" of that run: the plugin
reads a row's metric values from scalars and from nothing else.

Every event file written here ends in OWN_SUFFIX, so `clear()` can remove exactly these files
before a folder is written again: TensorBoard keeps the first summary of a tag it reads in a
run, so a rewritten row or column list would otherwise lose to the stale one.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import plugin_data_pb2

HParamValue = str | float | int | bool
OWN_SUFFIX = ".mtl.v2"
# The HParams dashboard ticks the first five hparams of the experiment for its table and
# parallel-coordinates view, after sorting them by `differs` (true first), then by name.
DEFAULT_VIEW_SIZE = 5


def writer(logdir: str | Path):
    """A summary writer whose event files clear() recognises as this module's."""
    return tf.summary.create_file_writer(str(logdir), filename_suffix=OWN_SUFFIX)


def clear(logdir: str | Path) -> None:
    """Remove the event files this module wrote directly inside `logdir` (nothing else)."""
    for event_file in Path(logdir).glob(f"events.out.tfevents.*{OWN_SUFFIX}"):
        event_file.unlink()


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
    run_writer = writer(run_logdir)
    try:
        with run_writer.as_default():
            hp.hparams(dict(hparams), trial_id=group)
            for tag, value in metrics.items():
                tf.summary.scalar(tag, float(value), step=step)
        run_writer.flush()
    finally:
        run_writer.close()


def write_hparams_config(
    logdir: str | Path,
    hparam_names_and_values: Mapping[str, Sequence[HParamValue]],
    metric_names: Mapping[str, str],
    *,
    shown: Sequence[str] = (),
    descriptions: Mapping[str, str] | None = None,
) -> None:
    """Declare the HParams dashboard's columns for all runs under TensorBoard's --logdir.

    `logdir` is any folder under it: the plugin takes the first column declaration it finds
    in any run. `hparam_names_and_values` maps each hparam to the values it may take (an empty
    list: any value); `metric_names` maps each metric tag, as given to write_hparams(), to the
    name the dashboard shows, and `descriptions` a tag or hparam to its tooltip. Once this is
    written the dashboard shows exactly these columns: hparams or metrics of a run that are
    not listed here are not shown. The hparams in `shown` (at most DEFAULT_VIEW_SIZE) are the
    ones the dashboard ticks by default; without `shown`, the first five by name.
    """
    if len(shown) > DEFAULT_VIEW_SIZE:
        raise ValueError(f"the dashboard shows {DEFAULT_VIEW_SIZE} hparams by default, not {len(shown)}: {shown}")
    descriptions = descriptions or {}
    columns = [
        hp.HParam(name, hp.Discrete(_same_type(name, values)) if values else None, description=descriptions.get(name))
        for name, values in hparam_names_and_values.items()
    ]
    metrics = [
        hp.Metric(tag, display_name=display, description=descriptions.get(tag)) for tag, display in metric_names.items()
    ]
    summary = hp.hparams_config_pb(hparams=columns, metrics=metrics)
    # `differs` is how the dashboard picks the columns it shows before the user ticks any;
    # the plugin only computes it for runs without a declaration, so declare it here.
    [value] = summary.value
    plugin_data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    for info in plugin_data.experiment.hparam_infos:
        info.differs = info.name in shown
    value.metadata.plugin_data.content = plugin_data.SerializeToString()
    config_writer = writer(logdir)
    try:
        with config_writer.as_default():
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=0)
        config_writer.flush()
    finally:
        config_writer.close()


def _same_type(name: str, values: Sequence[HParamValue]) -> list[HParamValue]:
    """The values as one Python type, as hp.Discrete requires; ints among floats become floats."""
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    is_number = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in values]
    if all(is_number) and any(isinstance(v, float) for v in values):
        return [float(v) for v in values]
    if len({type(v) for v in values}) > 1:
        raise ValueError(f"hparam {name!r}: values of mixed types {values!r}")
    return values
