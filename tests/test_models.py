"""Networks: the notebook's LeNet, the DS-ResNet, colour handling and the inference model."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from conftest import SAMPLE
from mtl.config import DataConfig, ModelConfig
from mtl.data import sources
from mtl.errors import UserError
from mtl.models.build import Grayscale, build_network, inference_model, load_inference_model
from mtl.tasks import EMOTION, FOUR, GENDER, four_from_tasks


@pytest.fixture(scope="module")
def faces():
    """Eight real sample faces (four gender, four FER2013), float32 [8, 64, 64, 3] in 0..255."""
    gender = sources.task_folder(SAMPLE / "gender" / "Validation", GENDER).dataset(64).take(4)
    emotion = sources.task_folder(SAMPLE / "fer2013" / "test", EMOTION).dataset(64).take(4)
    return np.stack([image for image, _ in gender.concatenate(emotion).as_numpy_iterator()]).astype(np.float32)


def two_head_network(data=DataConfig(), model=ModelConfig(), name="two_heads"):
    return build_network(model, data, {GENDER: 2, EMOTION: 2}, name=name)


def test_lenet_is_the_notebooks_architecture():
    network = build_network(ModelConfig(backbone="lenet"), DataConfig(), {GENDER: 2}, name="gender_model")
    body = [layer for layer in network.layers if not isinstance(layer, layers.InputLayer)]

    assert [type(layer) for layer in body] == [
        layers.Rescaling,
        layers.Conv2D,
        layers.AveragePooling2D,
        layers.Conv2D,
        layers.AveragePooling2D,
        layers.Flatten,
        layers.Dense,
        layers.Dropout,
        layers.Dense,
        layers.Dropout,
        layers.Dense,  # the gender head
    ]
    rescale, conv1, pool1, conv2, pool2, flatten, dense1, drop1, dense2, drop2, head = body
    assert rescale.scale == pytest.approx(1 / 255) and rescale.offset == 0
    assert (conv1.filters, conv1.kernel_size, conv1.padding) == (32, (3, 3), "same")
    assert (conv2.filters, conv2.kernel_size, conv2.padding) == (32, (3, 3), "valid")
    assert conv1.activation is keras.activations.relu and conv2.activation is keras.activations.relu
    assert pool1.pool_size == pool2.pool_size == (2, 2)
    assert (dense1.units, dense2.units) == (120, 84)
    assert dense1.activation is keras.activations.relu and dense2.activation is keras.activations.relu
    assert drop1.rate == drop2.rate == 0.5
    assert (head.name, head.units, head.activation) == (GENDER, 2, keras.activations.softmax)
    # 64 -> 64 (same) -> 32 -> 30 (valid) -> 15: 15 * 15 * 32 features into the first dense layer.
    assert flatten.output.shape[-1] == 15 * 15 * 32


def test_dsresnet_builds_with_the_configured_width_and_depth(faces):
    config = ModelConfig(backbone={"type": "dsresnet", "width": 8, "depth": 1})
    network = two_head_network(model=config)

    outputs = network(faces, training=False)

    separable = [layer for layer in network.layers if isinstance(layer, layers.SeparableConv2D)]
    assert len(separable) == 3 * config.backbone.depth * 2  # three stages of `depth` blocks, two convolutions each
    assert [layer.filters for layer in separable[::2]] == [8, 16, 32]
    assert set(outputs) == {GENDER, EMOTION}
    assert outputs[GENDER].shape == outputs[EMOTION].shape == (8, 2)
    assert np.allclose(np.sum(outputs[GENDER], axis=1), 1, atol=1e-5)


def test_grayscale_layer_makes_the_three_channels_equal(faces):
    grey = Grayscale()(tf.constant(faces)).numpy()

    assert grey.shape == faces.shape
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    expected = faces @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.allclose(grey[..., 0], expected, atol=1e-3)
    # A face that is already grey stays as it is (the weights sum to one).
    already_grey = faces[4:]  # the FER2013 faces
    assert np.allclose(Grayscale()(tf.constant(already_grey)).numpy(), already_grey, atol=1e-3)


def test_gray_colour_mode_puts_the_grayscale_layer_first():
    network = two_head_network(data=DataConfig(color="gray"))
    assert isinstance(network.layers[1], Grayscale)
    assert not any(isinstance(layer, Grayscale) for layer in two_head_network().layers)


def test_inference_model_of_two_heads_gives_four_classes_by_outer_product(faces):
    gender = build_network(ModelConfig(), DataConfig(), {GENDER: 2}, name="gender_model")
    emotion = build_network(ModelConfig(), DataConfig(), {EMOTION: 2}, name="emotion_model")

    outputs = {task: np.asarray(value) for task, value in inference_model([gender, emotion], DataConfig())(faces).items()}

    assert set(outputs) == {GENDER, EMOTION, FOUR}
    assert outputs[FOUR].shape == (8, 4)
    for task in outputs:
        assert np.allclose(outputs[task].sum(axis=1), 1, atol=1e-5)
    assert np.allclose(outputs[GENDER], gender(faces)[GENDER], atol=1e-6)
    assert np.allclose(outputs[FOUR], four_from_tasks(outputs[EMOTION], outputs[GENDER]), atol=1e-6)
    # Emotion-major: happy_female = P(happy) * P(female).
    assert np.allclose(outputs[FOUR][:, 0], outputs[EMOTION][:, 0] * outputs[GENDER][:, 0], atol=1e-6)


def test_inference_model_of_a_four_class_head_gives_tasks_as_marginals(faces):
    four = build_network(ModelConfig(), DataConfig(), {FOUR: 4}, name="four_class_model")

    outputs = {task: np.asarray(value) for task, value in inference_model([four], DataConfig())(faces).items()}
    grid = outputs[FOUR].reshape(8, 2, 2)  # [emotion, gender]

    for task in (GENDER, EMOTION, FOUR):
        assert np.allclose(outputs[task].sum(axis=1), 1, atol=1e-5)
    assert np.allclose(outputs[EMOTION], grid.sum(axis=2), atol=1e-6)
    assert np.allclose(outputs[GENDER], grid.sum(axis=1), atol=1e-6)


@pytest.mark.parametrize("heads", ["two heads, gray", "four-class head"])
def test_saved_inference_model_reloads_with_identical_outputs(tmp_path, faces, heads):
    if heads == "four-class head":
        data = DataConfig()
        networks = [build_network(ModelConfig(), data, {FOUR: 4}, name="four_class_model")]
    else:
        data = DataConfig(color="gray")
        networks = [two_head_network(data=data)]
    model = inference_model(networks, data)
    model.save(tmp_path / "model.keras")

    reloaded = keras.models.load_model(tmp_path / "model.keras")

    before, after = model.predict_on_batch(faces), reloaded.predict_on_batch(faces)
    for task in (GENDER, EMOTION, FOUR):
        assert np.array_equal(np.asarray(before[task]), np.asarray(after[task]))


def test_an_inference_model_is_loaded_safely_and_checked_against_the_config(tmp_path):
    data = DataConfig(image_size=48)
    network = build_network(ModelConfig(backbone="lenet"), data, {GENDER: 2, EMOTION: 2}, name="two_heads")
    inference_model([network], data).save(tmp_path / "model.keras")
    (tmp_path / "truncated.keras").write_bytes((tmp_path / "model.keras").read_bytes()[:2000])

    assert load_inference_model(tmp_path / "model.keras", 48).input_shape[1:3] == (48, 48)
    with pytest.raises(UserError, match=r"takes 48x48 images, but the config says data.image_size=64"):
        load_inference_model(tmp_path / "model.keras", 64)
    with pytest.raises(UserError, match="cannot be loaded"):
        load_inference_model(tmp_path / "truncated.keras")
