"""`data.cache`: decoded images kept in memory, in files under a folder, or not at all, always the same images."""

import numpy as np
import pytest

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
