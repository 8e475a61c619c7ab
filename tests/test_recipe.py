"""The training recipe's options each do what they say: warm-up, label smoothing, weight averaging, flip averaging."""

import numpy as np
import pytest
import tensorflow as tf

from mtl import labels, training
from mtl.approaches.batches import batches_with_targets
from mtl.config import DataConfig, ModelConfig, TrainConfig, config_from_dict
from mtl.models.build import build_network, inference_model
from mtl.tasks import EMOTION, FOUR, GENDER, TASKS
from mtl.budget import Plan


def test_warmup_raises_the_learning_rate_from_zero_then_decays_it():
    optimizer = training.make_optimizer(
        TrainConfig(learning_rate=0.01, schedule="cosine", warmup_epochs=1.0), steps_per_epoch=10, steps=30
    )
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    rates = [float(schedule(step)) for step in (0, 5, 10, 20, 30)]
    assert rates[0] == pytest.approx(0.0) and rates[1] == pytest.approx(0.005)
    assert rates[2] == pytest.approx(0.01) and rates[2] > rates[3] > rates[4]


def test_label_smoothing_spreads_part_of_each_target_over_the_classes():
    config = config_from_dict({"data": {"augment": None, "batch_size": 4}, "train": {"label_smoothing": 0.2}})
    images = tf.zeros([4, 64, 64, 3], tf.uint8)
    examples = tf.data.Dataset.from_tensor_slices(
        (images, {GENDER: tf.constant([0, 1, -1, -1]), EMOTION: tf.constant([-1, -1, 1, 0])})
    )
    _, targets, weights = next(iter(batches_with_targets(
        examples, config, lambda batch_labels, _: labels.task_targets(batch_labels, None, config.options)
    )))
    np.testing.assert_allclose(targets[GENDER].numpy()[:2], [[0.9, 0.1], [0.1, 0.9]], atol=1e-6)
    np.testing.assert_allclose(weights[GENDER].numpy(), [1, 1, 0, 0])  # missing labels stay masked


def test_flip_averaging_answers_the_mean_over_the_face_and_its_mirror():
    network = build_network(ModelConfig(backbone="lenet"), DataConfig(), {task: 2 for task in TASKS}, name="two_heads")
    plain = inference_model([network], DataConfig())
    averaged = inference_model([network], DataConfig(), flip_average=True)
    faces = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")

    both = plain.predict_on_batch(np.concatenate([faces, faces[:, :, ::-1]]))
    got = averaged.predict_on_batch(faces)

    for task in (GENDER, EMOTION):
        np.testing.assert_allclose(got[task], (both[task][:3] + both[task][3:]) / 2, atol=1e-5)
    np.testing.assert_allclose(got[FOUR].sum(axis=1), 1, atol=1e-5)


def test_weight_averaging_keeps_the_averaged_weights_of_the_best_epoch():
    network = build_network(ModelConfig(backbone="lenet", dropout=0.0), DataConfig(), {GENDER: 2}, name="gender_model")
    trainer = training.Trainer(network)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (16, 64, 64, 3)).astype("float32")
    targets = np.eye(2, dtype="float32")[rng.integers(0, 2, 16)]
    train = tf.data.Dataset.from_tensors((images, {GENDER: targets}, {GENDER: np.ones(16, "float32")})).repeat()
    validation = tf.data.Dataset.from_tensors((images, {GENDER: targets.argmax(1), EMOTION: -np.ones(16, "int64")}))
    config = TrainConfig(learning_rate=0.01, weight_averaging=True)

    training.fit(trainer, train, validation, config, Plan("network", 1, 5, 5), log_dir=None)

    averages = trainer.optimizer._model_variables_moving_average
    assert len(averages) == len(trainer.trainable_variables)
    for variable, average in zip(trainer.trainable_variables, averages):
        np.testing.assert_allclose(variable.numpy(), average.numpy(), atol=1e-6)


def test_weight_averaging_spans_about_one_epoch_whatever_its_length():
    def momentum(steps_per_epoch):
        return training.make_optimizer(TrainConfig(weight_averaging=True), steps_per_epoch, steps=5 * steps_per_epoch).ema_momentum

    assert momentum(448) == pytest.approx(1 - 1 / 448)  # the full data's multitask epoch
    assert momentum(1) == 0.5 and momentum(100_000) == 0.999
