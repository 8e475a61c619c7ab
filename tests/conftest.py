"""Shared fixtures: tiny configs on the bundled sample, one trained run, images written on demand.

Everything trains on `mtl/sample_data` (about 1,900 real faces) for one epoch, so the
numbers mean nothing; the tests check behaviour, never accuracy or speed.
"""

import contextlib
import io
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from mtl.config import config_from_dict  # noqa: E402
from mtl.data.pipeline import sample_data_dir  # noqa: E402

SAMPLE = sample_data_dir()
FOUR_FOLDERS = ("happy_female", "happy_male", "sad_female", "sad_male")


def tiny_settings(**sections) -> dict:
    """A config dict for one quick epoch on the sample; `sections` update its sections."""
    values = {
        "data": {"batch_size": 32},
        "model": {"backbone": "lenet"},
        "train": {"epochs": 1, "seed": 7},
    }
    for name, changes in sections.items():
        if isinstance(changes, dict):
            values[name] = {**values.get(name, {}), **changes}
        else:
            values[name] = changes
    return values


@pytest.fixture
def tiny_config():
    """Factory: `tiny_config(approach="multitask", options={...})` -> ExperimentConfig on the sample."""

    def make(**sections):
        return config_from_dict(tiny_settings(**sections))

    return make


def write_image(path: Path, mode: str = "RGB", size=(40, 50), seed: int = 0, **save_options) -> Path:
    """Write a random image of PIL `mode` and (width, height) `size`; the suffix picks the format."""
    rng = np.random.default_rng(seed)
    width, height = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        picture = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(
            "P", palette=Image.Palette.ADAPTIVE, colors=16
        )
    else:
        channels = {"L": None, "RGB": 3, "RGBA": 4}[mode]
        shape = (height, width) if channels is None else (height, width, channels)
        picture = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    picture.save(path, **save_options)
    return path


@pytest.fixture
def image_writer():
    """The `write_image(path, mode, size, seed)` helper, as a fixture."""
    return write_image


def copy_sample_images(source: Path, destination: Path, count: int) -> list[Path]:
    """Copy the first `count` images (sorted by name) of a sample class folder."""
    destination.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(source.iterdir())[:count]:
        copied.append(Path(shutil.copy(path, destination / path.name)))
    return copied


@pytest.fixture(scope="session")
def joint_folder(tmp_path_factory) -> Path:
    """A jointly labelled folder {happy_female,...}/ of real sample faces in mixed formats.

    Each class folder gets three faces: happy/sad ones come from the FER2013 sample, and one
    of them is re-saved as a 13x200 BMP, so the four-class evaluation sees varied files.
    """
    root = tmp_path_factory.mktemp("joint")
    for index, name in enumerate(FOUR_FOLDERS):
        emotion, gender = name.split("_")
        folder = root / name
        faces = copy_sample_images(SAMPLE / "fer2013" / "test" / emotion, folder, 2)
        faces += copy_sample_images(SAMPLE / "gender" / "Validation" / gender, folder, 1)
        with Image.open(faces[0]) as face:
            face.resize((13, 200)).save(folder / f"odd_{index}.bmp")
    return root


def file_modes_ignored() -> bool:
    """Whether this process writes where a folder's mode forbids it (root, with CAP_DAC_OVERRIDE): a test of
    unreadable or read-only paths skips then, since nothing would be refused."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o500)
        try:
            Path(folder, "probe").touch()
            return True
        except PermissionError:
            return False
        finally:
            os.chmod(folder, 0o700)


needs_file_modes = pytest.mark.skipif(file_modes_ignored(), reason="this user (root) is not refused by file modes")


def run_cli(*argv) -> tuple[int, str, str]:
    """`mtl.cli.main(argv)` in-process; returns (exit code, stdout, stderr)."""
    from mtl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as exit_:  # argparse rejects bad arguments this way
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One `separate` run on the sample, trained and evaluated through `mtl train` (1 epoch).

    Yields (run_dir, stdout of the command). Tests reading it must not change it.
    """
    runs = tmp_path_factory.mktemp("runs")
    code, out, err = run_cli(
        "train", "separate", "--epochs", "1", "--set", "data.batch_size=32", "--set", "train.seed=7",
        "--runs-dir", runs, "--name", "separate",
    )
    assert code == 0, err
    return runs / "separate", out

