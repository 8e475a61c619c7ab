"""A real TensorBoard for the tests, and what its HParams dashboard shows, read over HTTP.

The package only writes event files (mtl.dashboard); reading rows back is how the tests
check that TensorBoard itself shows them as intended, so it lives here, not in `mtl`.
"""

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

# Every session status the plugin knows. write_hparams() writes no "session end" record, so
# our runs have STATUS_UNKNOWN; a request that leaves it out gets no rows back at all.
_ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
# The plugin slices the result with [startIndex : startIndex + sliceSize]; the proto default
# of 0 would return nothing, so ask for more rows than any experiment here will have.
_SLICE_SIZE = 1_000_000
# The HParams dashboard (tf-hparams-query-pane) ticks this many hparams before the user does.
_DEFAULT_VIEW_SIZE = 5


@contextlib.contextmanager
def tensorboard_server(logdir: Path, scratch: Path, startup_seconds: float = 90):
    """A real TensorBoard serving `logdir` on a free local port; yields its base URL.

    The Python loader, everything loaded once before the first answer (--reload_task blocking),
    the port chosen by the OS and read from the log.
    """
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3", TMPDIR=str(scratch))
    log_path = scratch / "tensorboard.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
                "--port", "0", "--load_fast=false", "--reload_interval", "0", "--reload_task", "blocking",
            ],
            stdout=subprocess.DEVNULL, stderr=log, env=env,
        )
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            match = re.search(r" at (http://127\.0\.0\.1:\d+)/", log_path.read_text())
            if match:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"TensorBoard did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_hparams_from_server(url: str, timeout: float = 30.0) -> list[dict]:
    """Read every run's HParams row back from a running TensorBoard at `url`.

    Asks the HParams plugin (POST <url>/data/plugin/hparams/session_groups) for all session
    groups, whatever their status, and returns one dict per run (session), sorted by run:
        {"run": run name relative to the logdir, "group": its trial id,
         "hparams": {name: value}, "metrics": {tag: last value}}
    A metric logged in a sub-directory ("group" of hp.Metric) is keyed "<group>/<tag>".
    Numbers come back as floats. Raises urllib.error.URLError if the server does not answer
    and urllib.error.HTTPError if the plugin rejects the request.
    """
    request = {
        "experimentName": "",
        "allowedStatuses": _ALL_STATUSES,
        # No colParams: the plugin then returns every hparam and every metric it knows.
        "colParams": [],
        "startIndex": 0,
        "sliceSize": _SLICE_SIZE,
    }
    response = _post_json(url, "session_groups", request, timeout)
    rows = []
    for group in response.get("sessionGroups", []):
        for session in group.get("sessions", []):
            rows.append(
                {
                    "run": session["name"],
                    "group": group["name"],
                    "hparams": dict(group.get("hparams", {})),
                    "metrics": {
                        _metric_key(m["name"]): m["value"] for m in session.get("metricValues", [])
                    },
                }
            )
    return sorted(rows, key=lambda row: row["run"])


def read_experiment_from_server(url: str, timeout: float = 30.0) -> dict:
    """Read the HParams dashboard's columns from a running TensorBoard at `url`.

    POSTs to <url>/data/plugin/hparams/experiment and returns
        {"hparams": {name: list of allowed values, or None if any value},
         "metrics": {tag (or "<group>/<tag>"): display name},
         "descriptions": {hparam name or metric key: description, where there is one},
         "shown": hparam names the dashboard ticks by default, in its order}.
    With a write_hparams_config() record these are its columns; without one, the plugin
    derives them from the runs (and then lists every scalar of the runs as a metric).
    """
    response = _post_json(url, "experiment", {"experimentName": ""}, timeout)
    hparams = {}
    for info in response.get("hparamInfos", []):
        discrete = info.get("domainDiscrete")
        hparams[info["name"]] = list(discrete) if discrete is not None else None
    metrics = {
        _metric_key(info["name"]): info.get("displayName", "")
        for info in response.get("metricInfos", [])
    }
    descriptions = {
        **{info["name"]: info["description"] for info in response.get("hparamInfos", []) if info.get("description")},
        **{_metric_key(info["name"]): info["description"] for info in response.get("metricInfos", []) if info.get("description")},
    }
    # The dashboard sorts the hparams it gets by `differs` (stably) and ticks the first few.
    infos = sorted(response.get("hparamInfos", []), key=lambda info: not info.get("differs", False))
    shown = [info["name"] for info in infos[:_DEFAULT_VIEW_SIZE]]
    return {"hparams": hparams, "metrics": metrics, "descriptions": descriptions, "shown": shown}


def read_runs_from_server(url: str, timeout: float = 30.0) -> list[str]:
    """The run names a running TensorBoard at `url` lists (GET <url>/data/runs), as its run selector does."""
    with urllib.request.urlopen(f"{url.rstrip('/')}/data/runs", timeout=timeout) as answer:
        return json.loads(answer.read().decode("utf-8"))


def _post_json(url: str, route: str, body: dict, timeout: float) -> dict:
    """POST `body` as JSON to the HParams plugin's `route` and return the decoded JSON answer."""
    # The plugin parses the raw POST body as the request proto in JSON form.
    request = urllib.request.Request(
        f"{url.rstrip('/')}/data/plugin/hparams/{route}",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read().decode("utf-8"))


def _metric_key(name: Mapping[str, str]) -> str:
    group, tag = name.get("group", ""), name["tag"]
    return f"{group}/{tag}" if group else tag
