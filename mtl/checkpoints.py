"""The checkpoints of a stage in training: one folder per finished epoch, written aside and renamed when whole.

Everything a resumed fit needs from one epoch (the weights with the optimizer, the layers' random
states, the best epoch so far and every epoch's logs) sits in one folder `epoch-NNNNN`, written as
`.epoch-NNNNN.tmp` and renamed once every file is on disk. A kill or a full disk while an epoch is
checkpointed leaves the folders before it as they were; the two newest are kept, so a checkpoint that
cannot be read (a disk that lost it) falls back to the one before.
"""

import contextlib
import errno
import json
import os
import re
import shutil
from pathlib import Path

import keras
import numpy as np

from mtl.runs import disk_full, no_space, sync, write_json

WEIGHTS = "latest.weights.h5"  # the network with its optimizer, Keras's own format
RANDOM_STATES = "random_states.npz"
BEST_STATE, BEST_WEIGHTS = "best.json", "best_weights.npz"
SECONDS = "seconds.json"  # the training seconds spent up to this checkpoint
KEPT = 2
_FOLDER = re.compile(r"epoch-(\d{5})")


class Checkpoints:
    """The epoch folders under `directory`: what a fit resumes from (`restored`) and where it writes the next."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.discard_pending()  # what a killed fit left half-written; one process writes a run (`run_lock`)
        self.restored: Path | None = None  # the folder `restore` loaded, read by the other callbacks

    def finished(self) -> list[tuple[int, Path]]:
        """(epochs finished, folder) of every whole checkpoint, newest first."""
        found = [(int(match[1]), path) for path in self.directory.iterdir() if (match := _FOLDER.fullmatch(path.name))]
        return sorted(found, reverse=True)

    def restore(self, trainer: keras.Model) -> int:
        """Load the newest readable checkpoint into `trainer` (its optimizer built); returns its epochs, 0 if none.

        An unreadable one is passed over, saying so, and the variables are set back before the next is tried.
        """
        variables = [*trainer.variables, *trainer.optimizer.variables]
        initial = [variable.numpy() for variable in variables]
        for number, (epochs, folder) in enumerate(self.finished()):
            try:
                trainer.load_weights(folder / WEIGHTS)
                for name in (RANDOM_STATES, BEST_WEIGHTS):
                    if (folder / name).exists():
                        with np.load(folder / name) as saved:
                            [saved[key] for key in saved.files]  # noqa: B018  reads every array: a damaged one fails here
                json.loads((folder / BEST_STATE).read_text())
            except (OSError, ValueError, KeyError, EOFError) as error:
                for variable, value in zip(variables, initial):
                    variable.assign(value)
                older = len(self.finished()) > number + 1
                then = "resuming from the one before" if older else "starting the stage afresh"
                print(f"The checkpoint {folder} cannot be read ({type(error).__name__}); {then}.", flush=True)
                continue
            self.restored = folder
            return epochs
        return 0

    def restored_seconds(self) -> float:
        """The training seconds spent up to the restored checkpoint; 0 for one written before they were kept."""
        path = self.restored / SECONDS if self.restored is not None else None
        if path is None or not path.is_file():
            return 0.0
        return float(json.loads(path.read_text())["training_seconds"])

    def pending(self, epochs: int) -> Path:
        """The folder that becomes the checkpoint of `epochs` finished epochs on `commit`; made if missing."""
        folder = self.directory / f".epoch-{epochs:05d}.tmp"
        folder.mkdir(exist_ok=True)
        return folder

    def previous(self) -> Path | None:
        """The newest whole checkpoint: the one the pending folder follows."""
        finished = self.finished()
        return finished[0][1] if finished else None

    def commit(self, epochs: int, seconds: float | None = None) -> None:
        """Make the pending folder of `epochs` the newest checkpoint, with the training `seconds` spent up to it,
        then drop all but the KEPT newest."""
        pending = self.pending(epochs)
        with writing(pending, self.previous()):
            if seconds is not None:
                write_json(pending / SECONDS, {"training_seconds": seconds})
            for path in pending.iterdir():
                sync(path)  # the bytes on disk before the name points at them
            final = self.directory / f"epoch-{epochs:05d}"
            shutil.rmtree(final, ignore_errors=True)  # a checkpoint of this epoch from before a resume
            os.replace(pending, final)
            sync(self.directory)
        for _, folder in self.finished()[KEPT:]:
            shutil.rmtree(folder, ignore_errors=True)

    def discard_pending(self) -> None:
        for path in self.directory.glob(".epoch-*.tmp"):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def writing(folder: Path, like: Path | None):
    """Turns a full disk inside the block into a UserError naming the folder of checkpoints (not the
    hidden one being written), needing about what the last checkpoint took, or what this one took
    before the disk filled, whichever is more.

    The half-written folder is removed, so the newest whole checkpoint stays the one to resume from.
    """
    try:
        yield folder
    except Exception as error:
        if not disk_full(error):
            raise
        needed = max(_size_of(folder), _size_of(like) if like is not None else 0)
        shutil.rmtree(folder, ignore_errors=True)
        raise no_space(folder.parent, needed) from None


def _size_of(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


def save_weights(checkpoints: Checkpoints, epochs: int, model: keras.Model) -> None:
    pending = checkpoints.pending(epochs)
    with writing(pending, checkpoints.previous()):
        model.save_weights(pending / WEIGHTS)


def save_arrays(checkpoints: Checkpoints, epochs: int, name: str, arrays: list) -> None:
    pending = checkpoints.pending(epochs)
    with writing(pending, checkpoints.previous()), open(pending / name, "wb") as file:
        np.savez(file, *arrays)


def keep_arrays(checkpoints: Checkpoints, epochs: int, name: str) -> None:
    """Carry the previous checkpoint's `name` into the pending one, by a hard link where the disk allows."""
    previous = checkpoints.previous()
    if previous is None or not (previous / name).exists():
        return
    pending = checkpoints.pending(epochs)
    with writing(pending, previous):
        try:
            os.link(previous / name, pending / name)
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(previous / name, pending / name)


def save_json(checkpoints: Checkpoints, epochs: int, name: str, values) -> None:
    pending = checkpoints.pending(epochs)
    with writing(pending, checkpoints.previous()):
        write_json(pending / name, values)


def load_arrays(folder: Path | None, name: str) -> list | None:
    if folder is None or not (folder / name).exists():
        return None
    with np.load(folder / name) as saved:
        return [saved[f"arr_{index}"] for index in range(len(saved.files))]


def epochs_finished(directory: Path) -> int:
    """How many epochs the newest checkpoint in `directory` holds (0 if none)."""
    if not Path(directory).is_dir():
        return 0
    finished = Checkpoints(directory).finished()
    return finished[0][0] if finished else 0

