"""Run directories and the files in them.

A run directory is one per trained approach, never overwritten, with the config saved first; its
name is one plain folder name inside --runs-dir, so nothing is ever written outside it. Every
artifact (config, metrics, training summaries, models, figures) is written under a temporary
name and renamed into place, so a kill at any moment leaves the old file or the new one. One
process at a time writes a run: `run_lock` holds it, and a second process is refused; a search
directory is held the same way, and an export's target by `output_lock`.
"""

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import shutil
import time
from importlib import resources
from pathlib import Path

from mtl.config import ExperimentConfig
from mtl.errors import DiskFull, UserError

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
LITE_MODEL_FILE = "model.tflite"  # the TFLite export of MODEL_FILE beside it (the bundled model ships one)
METRICS_FILE = "metrics.json"
REFIT_FILE = "refit.json"  # in a run made by `mtl refit`: which heads were refitted, chosen how, on which groups
TRAINED_HEAD = "trained head"  # what REFIT_FILE names as chosen where `mtl refit` kept a head as training left it
EVALUATION_DIR = "evaluation"  # the figures of METRICS_FILE, beside it
LOCK_FILE = ".lock"  # held by the process writing the run; hidden, so readers of the run skip it

MAX_NAME_LENGTH = 100
# ASCII letters, digits and a few safe marks; no separator, so a name cannot leave --runs-dir,
# and no leading dot, so neither ".." nor a hidden folder.
_RUN_NAME = re.compile(rf"[A-Za-z0-9_+=@,-][A-Za-z0-9._+=@,-]{{0,{MAX_NAME_LENGTH - 1}}}")


def default_run_name(config: ExperimentConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config.approach.type}-{config.model.backbone.type}"


def run_directory(runs_dir, name: str) -> Path:
    """`runs_dir/name`, once `name` is one plain folder name and `runs_dir` can hold folders; nothing is made."""
    if not _RUN_NAME.fullmatch(name):
        shown = name if len(name) <= 60 else f"{name[:57]}..."
        raise UserError(
            f"Run name '{shown}' is not a plain folder name; use at most {MAX_NAME_LENGTH} "
            "letters, digits and '.', '_', '-', '+', '=', '@' or ',' (not starting with '.')."
        )
    runs_dir = Path(runs_dir)
    existing = next(folder for folder in (runs_dir, *runs_dir.parents) if folder.exists())
    if not existing.is_dir():
        raise UserError(f"--runs-dir '{runs_dir}' cannot hold run directories: '{existing}' is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--runs-dir '{runs_dir}' cannot hold run directories: '{existing}' is not writable.")
    return runs_dir / name


def check_output_path(path: Path, option: str = "--output") -> None:
    """Refuse, before any work, an output path that writing could not make or would misplace: a symbolic link
    (dangling or not, writing would follow it or replace it), or one under a file or a folder this process cannot write."""
    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{option} '{path}' is a symbolic link to '{os.readlink(path)}'; choose a new path.")
    existing = next(folder for folder in path.absolute().parents if folder.exists())
    if not existing.is_dir():
        raise UserError(f"{option} '{path}' cannot be written: '{existing}' is a file, not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{option} '{path}' cannot be written: '{existing}' is not writable.")


def create_run(directory: Path, config: ExperimentConfig) -> Path:
    """Make a new run directory holding the resolved config; an existing non-empty one is an error."""
    directory = Path(directory)
    if directory.exists() and any(path.name != LOCK_FILE for path in directory.iterdir()):
        raise UserError(f"Run directory '{directory}' already exists and is not empty; choose another --name.")
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / CONFIG_FILE, config.to_dict())
    return directory


def remove_contents(directory: Path) -> None:
    """Empty `directory` but for its lock file: what a killed writer holding that lock left unfinished."""
    for left in Path(directory).iterdir():
        if left.name != LOCK_FILE:
            _remove(left)


def _remove(path: Path) -> None:
    """Remove a file, link or folder."""
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@contextlib.contextmanager
def run_lock(directory: Path, kind: str = "Run directory"):
    """Holds `directory` (made if missing) for this process while the block runs; a second holder is a UserError.

    An advisory `flock` on its lock file, which the operating system releases when the holder ends in any
    way, killed included: a lock left by a dead process is taken over, never waited on. The file keeps
    the holder's PID so the refusal can name it. `kind` names what the directory is ("Search directory").
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    refusal = lambda holder: (f"{kind} '{directory}' is in use by process {holder}; "  # noqa: E731
                              "wait for it to finish, or stop it, and run the command again.")
    with _held(directory / LOCK_FILE, refusal):
        yield directory


@contextlib.contextmanager
def output_lock(path: Path):
    """Holds the new file or folder `path` (an export) for this process, as `run_lock` holds a run, with a lock
    file beside it that is removed afterwards; what a killed writer of `path` left beside it is removed first."""
    path = Path(path)
    refusal = lambda holder: (f"--output '{path}' is being written by process {holder}; "  # noqa: E731
                              "wait for it to finish, or stop it, and run the command again.")
    lock_file = path.with_name(f".{path.name}.lock")
    with _held(lock_file, refusal):
        try:
            left_by_the_killed = re.compile(rf"\.{re.escape(path.name)}(\.json)?\.\d+\.tmp.*")
            for left in path.parent.iterdir():
                if left_by_the_killed.fullmatch(left.name):  # only a writer of `path`, which held this lock, makes these
                    _remove(left)
            yield path
        finally:
            lock_file.unlink(missing_ok=True)  # while still held: the next holder checks it locked the file at the name


@contextlib.contextmanager
def _held(lock_file: Path, refusal):
    """An exclusive `flock` on `lock_file` while the block runs, its holder's PID written in it; if another
    process holds it, a UserError `refusal(pid)`."""
    while True:
        descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise UserError(refusal(holder)) from None
        try:
            if os.stat(lock_file).st_ino == os.fstat(descriptor).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(descriptor)  # its last holder removed the file as this process opened it: lock the one there now
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def require_run(directory: Path) -> Path:
    """An existing run directory with a trained model, or a UserError saying what is missing."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"Run directory '{directory}' does not exist.")
    if not (directory / MODEL_FILE).is_file():
        raise UserError(f"Run directory '{directory}' holds no {MODEL_FILE}; train it first with 'mtl train'.")
    return directory


def evaluation_dir(metrics_file: Path) -> Path:
    """Where the figures of a metrics file go: `evaluation/` beside a run's metrics.json, else `<stem>_evaluation/`."""
    metrics_file = Path(metrics_file)
    if metrics_file.name == METRICS_FILE:
        return metrics_file.parent / EVALUATION_DIR
    return metrics_file.parent / f"{metrics_file.stem}_evaluation"


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yields a temporary path beside `path`; renamed onto `path` only when the block ends without error.

    A kill at any moment leaves the old file or the new one, never half of one. The temporary name
    keeps the suffix (Keras saves only to `.keras`) and starts with a dot (readers skip it).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        sync(temporary)  # the bytes on disk before the name points at them
        os.replace(temporary, path)
        sync(path.parent)  # the rename itself
    except Exception as error:
        if not disk_full(error):
            raise
        # What the new file took before the disk filled, or the old one's size: about what it needs.
        needed = max((candidate.stat().st_size for candidate in (temporary, path) if candidate.is_file()), default=0)
        raise no_space(path, needed) from None
    finally:
        if temporary.exists():
            temporary.unlink()


@contextlib.contextmanager
def atomic_folder(path: Path):
    """Yields a new folder beside `path`, renamed to `path` (which must not exist) only when the block ends
    without error: a kill or a full disk leaves nothing under `path`, so the same command can run again."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        yield temporary
        for written in sorted(temporary.rglob("*")):
            if written.is_file():
                sync(written)
        os.rename(temporary, path)
        sync(path.parent)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def disk_full(error: BaseException) -> bool:
    """Whether `error` says the disk is full: an OSError with ENOSPC, or h5py's or TensorFlow's wording of it."""
    import tensorflow as tf  # only for its error type; runs.py is imported before TensorFlow is needed

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # h5py raises OSError without an errno ("... errno = 28, error message = 'No space left on device'"),
    # TensorFlow an OpError whose message quotes the system's.
    return isinstance(error, (OSError, tf.errors.OpError)) and (
        "No space left on device" in str(error) or "Disk quota exceeded" in str(error)
    )


def no_space(path, needed: int = 0) -> DiskFull:
    """The one sentence for a full disk: the path, about how much it needs, and that the command resumes."""
    path = Path(path)
    existing = next((folder for folder in (path, *path.parents) if folder.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    need = f"about {_size(needed)}" if needed else "more"
    return DiskFull(
        f"The disk holding '{path}' is full: writing there needs {need} and {_size(free)} is free; "
        "free some space and run the same command again."
    )


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} bytes"
    return f"{size / 1e3:.0f} kB" if size < 1e6 else f"{size / 1e6:.1f} MB"


def sync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


@contextlib.contextmanager
def replaced_folder(path: Path):
    """Yields a new empty folder that replaces `path`, and everything in it, when the block ends without error.

    Nothing of an earlier folder survives (no stale figures); a failed block leaves the earlier one as it was.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    previous = path.with_name(f".{path.name}.{os.getpid()}.old")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        yield temporary
        if path.exists():
            os.replace(path, previous)  # a folder cannot be swapped in one step: moved aside, then removed
        os.replace(temporary, path)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _finite(value):
    """`value` with every NaN or infinite float replaced by None, which strict JSON readers accept."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json(path: Path, values) -> None:
    """Write `values` as strict JSON (no NaN or Infinity: they become null), atomically."""
    atomic_write_text(path, json.dumps(_finite(values), indent=2, allow_nan=False) + "\n")


def bundled_model_path() -> Path:
    """Where a ready model ships inside the package (present only once one has been bundled)."""
    return Path(str(resources.files("mtl") / "pretrained" / MODEL_FILE))


def reference_labeller_path() -> Path:
    """The model whose answers group the faces of a test set by the task it does not label ("sad-looking
    women"): fixed, not the bundled model, so that the groups of every run, before and after a new
    bundled model, are the same people. It is the bundled model of November 2026 (gender 96.2% on
    gender/Validation, emotion 87.7% on FER2013), whose answers grouped every committed result."""
    return Path(str(resources.files("mtl") / "reference_labeller" / MODEL_FILE))
