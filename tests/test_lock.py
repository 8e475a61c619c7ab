"""One process at a time writes a run directory: a second one is refused naming the holder's PID, and the
lock of a process that died is taken over (mtl.runs.run_lock)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from mtl.config import ExperimentConfig
from mtl.errors import UserError
from mtl.runs import LOCK_FILE, run_lock
from photos import save_untrained_run

REPO = Path(__file__).resolve().parents[1]
HOLD = "import sys, time; from mtl.runs import run_lock\nwith run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)"
# An export in progress: its lock held, and what it has written so far beside its target.
HOLD_EXPORT = ("import os, sys, time; from pathlib import Path; from mtl.runs import output_lock\n"
               "with output_lock(Path(sys.argv[1])) as target:\n"
               "    target.with_name(f'.{target.name}.{os.getpid()}.tmp').mkdir()\n"
               "    print('held', flush=True); time.sleep(120)")


@pytest.fixture
def holder():
    """Factory: a separate process holding the lock of a directory (or an export) until the test ends (or kills it)."""
    processes = []

    def hold(directory: Path, script: str = HOLD) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", script, str(directory)], stdout=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        processes.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()


def test_a_second_process_on_a_held_run_is_refused_naming_the_holders_pid(holder, tmp_path):
    process = holder(tmp_path / "run")
    with pytest.raises(UserError, match=rf"^Run directory '.*run' is in use by process {process.pid}; "):
        with run_lock(tmp_path / "run"):
            pass


def test_the_lock_of_a_killed_process_is_taken_over(holder, tmp_path):
    process = holder(tmp_path / "run")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    with run_lock(tmp_path / "run"):
        assert (tmp_path / "run" / LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_the_lock_is_free_again_once_its_block_ends(tmp_path):
    with run_lock(tmp_path / "run"):
        pass
    with run_lock(tmp_path / "run"):
        pass


def test_evaluate_overwrite_of_a_run_another_process_holds_is_refused_before_any_work(holder, tmp_path):
    run = save_untrained_run(tmp_path / "run")
    (run / "config.json").write_text(json.dumps(ExperimentConfig().to_dict()))
    (run / "metrics.json").write_text("{}")
    process = holder(run)

    code, out, err = run_cli("evaluate", run, "--overwrite")

    assert code == 2 and f"is in use by process {process.pid}" in err and len(err.strip().splitlines()) == 1
    assert (run / "metrics.json").read_text() == "{}" and not (run / "evaluation").exists()


@pytest.mark.slow
def test_train_into_a_run_another_process_holds_is_refused_and_writes_nothing(holder, tmp_path):
    process = holder(tmp_path / "runs" / "held")

    code, _, err = run_cli("train", "separate", "--epochs", "1", "--runs-dir", tmp_path / "runs", "--name", "held")

    assert code == 2 and f"is in use by process {process.pid}" in err
    assert [path.name for path in (tmp_path / "runs" / "held").iterdir()] == [LOCK_FILE]


def test_a_search_into_a_directory_another_process_holds_is_refused_naming_the_holders_pid(holder, tmp_path):
    process = holder(tmp_path / "search")

    code, out, err = run_cli("tune", "separate", "--directory", tmp_path / "search", "--tuner", "random",
                             "--max-trials", "1", "--max-epochs", "1")

    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"Search directory '{tmp_path / 'search'}' is in use by process {process.pid}" in err
    assert [path.name for path in (tmp_path / "search").iterdir()] == [LOCK_FILE]  # no search_settings.json


def test_an_export_to_a_target_another_export_is_writing_is_refused_and_its_lock_taken_over_once_it_dies(
        holder, tmp_path):
    run = save_untrained_run(tmp_path / "run")
    target = tmp_path / "exports" / "served"
    target.parent.mkdir()
    process = holder(target, HOLD_EXPORT)

    code, _, err = run_cli("export", run, "--output", target)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--output '{target}' is being written by process {process.pid}" in err and not target.exists()

    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    code, _, err = run_cli("export", run, "--output", target)
    assert code == 0, err
    assert os.listdir(target.parent) == ["served"]  # the killed export's half folder and the lock file are gone
