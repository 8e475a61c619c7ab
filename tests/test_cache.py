"""`data.cache`: decoded images kept in memory, in files under a folder, or not at all, always the same images."""

import numpy as np
import pytest

from conftest import run_cli
from mtl.config import DataConfig
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError


def validation_images(cache: str) -> np.ndarray:
    data = ExperimentData.load(DataConfig(cache=cache), seed=7)
    return np.stack([image for image, _ in data.images(data.emotion_validation).as_numpy_iterator()])


def test_file_and_no_cache_give_the_images_of_the_memory_cache(tmp_path):
    in_memory = validation_images("memory")

    assert np.array_equal(validation_images(str(tmp_path / "cache")), in_memory)
    assert any((tmp_path / "cache").glob("images-*.index"))
    # A second run reads the files written by the first.
    assert np.array_equal(validation_images(str(tmp_path / "cache")), in_memory)
    assert np.array_equal(validation_images("none"), in_memory)


def test_a_cache_folder_that_cannot_be_made_is_a_user_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")

    with pytest.raises(UserError, match="data.cache"):
        validation_images(str(tmp_path / "file" / "cache"))


def refused_then_retried(tmp_path, retry: bool):
    (tmp_path / "file").write_text("not a folder")
    command = ["train", "separate", "--epochs", "1", "--no-evaluate", "--runs-dir", tmp_path / "runs", "--name", "run"]

    code, _, err = run_cli(*command, "--set", f"data.cache={tmp_path / 'file' / 'cache'}")
    assert code == 2 and "data.cache" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs" / "run").exists()  # nothing that would block the name
    if retry:
        code, out, err = run_cli(*command, "--set", f"data.cache={tmp_path / 'cache'}")
        assert code == 0, err
        assert (tmp_path / "runs" / "run" / "model.keras").is_file()


def test_a_refused_cache_folder_leaves_no_run_directory_behind(tmp_path):
    refused_then_retried(tmp_path, retry=False)


@pytest.mark.slow
def test_after_a_refused_cache_folder_the_same_command_with_a_good_one_trains(tmp_path):
    refused_then_retried(tmp_path, retry=True)
