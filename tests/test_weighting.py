"""Loss weightings: each method's defining behaviour on a toy problem, and selection by name."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl import weighting
from mtl.config import ApproachConfig, DataConfig, ModelConfig, config_from_dict
from mtl.errors import UserError
from mtl.models.build import build_network
from mtl.tasks import EMOTION, GENDER, TASKS
from mtl.training import Trainer
from mtl.weighting.base import Weighting


@weighting.register("gender_only")
class GenderOnly(Weighting):
    """A weighting written outside the package: only the gender head learns."""

    def total_loss(self, losses, present):
        return losses[GENDER]


def toy_network(seed=0):
    """Three inputs, a four-unit shared layer, a gender head and an emotion head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    features = keras.layers.Dense(4, activation="tanh", name="backbone")(inputs)
    return keras.Model(inputs, {head: keras.layers.Dense(2, activation="softmax", name=head)(features) for head in TASKS})


def toy_batch(labelled=TASKS, size=8):
    """Random inputs with one-hot targets; heads not in `labelled` have no labels (weight 0)."""
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(size, 3)), tf.float32)
    targets = {head: tf.one_hot(rng.integers(0, 2, size), 2) for head in TASKS}
    weights = {head: tf.fill([size], 1.0 if head in labelled else 0.0) for head in TASKS}
    return images, targets, weights


def train(trainer, batch, steps=2, epochs=1, learning_rate=0.1):
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate))
    batches = tf.data.Dataset.from_tensors(batch).repeat()
    return trainer.fit(batches, epochs=epochs, steps_per_epoch=steps, verbose=0).history


def layer_weights(network, name):
    return [np.array(variable) for variable in network.get_layer(name).weights]


def create(**options):
    return weighting.create(ApproachConfig(**options), TASKS)


# ---------------------------------------------------------------- fixed ---------------------


def test_fixed_weights_scale_each_head_loss_in_the_total():
    fixed = create(loss_weighting="fixed", gender_loss_weight=2.0, emotion_loss_weight=0.5)
    trainer = Trainer(toy_network(), fixed)

    history = train(trainer, toy_batch())

    assert history["loss"][0] == pytest.approx(2.0 * history["gender_loss"][0] + 0.5 * history["emotion_loss"][0], rel=1e-5)


# ---------------------------------------------------------------- uncertainty ---------------


def test_uncertainty_learns_the_log_variance_of_a_head_with_labels_only():
    uncertainty = create(loss_weighting="uncertainty")

    trainer = Trainer(toy_network(), uncertainty)

    train(trainer, toy_batch(labelled=[GENDER]))
    assert float(uncertainty.log_variances[GENDER]) != 0.0
    assert float(uncertainty.log_variances[EMOTION]) == 0.0  # no emotion labels: no signal at all

    train(trainer, toy_batch())
    assert float(uncertainty.log_variances[EMOTION]) != 0.0


def test_uncertainty_loss_is_weighted_loss_plus_half_log_variance_of_present_heads():
    uncertainty = create(loss_weighting="uncertainty")
    uncertainty.log_variances[GENDER].assign(np.log(4.0))

    total = uncertainty.total_loss({GENDER: tf.constant(2.0), EMOTION: tf.constant(3.0)}, {GENDER: 1.0, EMOTION: 0.0})

    assert float(total) == pytest.approx(2.0 / 4 + 0.5 * np.log(4.0), rel=1e-5)


# ---------------------------------------------------------------- DWA -----------------------


def dwa_weights(earlier, latest, temperature=2.0):
    scaled = np.exp(np.asarray(latest) / np.asarray(earlier) / temperature)
    return len(scaled) * scaled / scaled.sum()


def test_dwa_weights_follow_the_ratio_of_the_last_two_epoch_losses():
    dwa = create(loss_weighting="dwa")
    epochs = [
        [(1.0, 2.0), (3.0, 2.0)],  # epoch means: gender 2.0, emotion 2.0
        [(1.0, 1.9), (1.0, 1.7)],  # gender 1.0, emotion 1.8
        [(0.5, 1.0), (0.5, 1.0)],
    ]
    seen = []
    for steps in epochs:
        seen.append(np.array(dwa.loss_weights))
        for gender, emotion in steps:
            dwa.total_loss({GENDER: tf.constant(gender), EMOTION: tf.constant(emotion)}, {GENDER: 1.0, EMOTION: 1.0})
        dwa.end_epoch()

    assert seen[0].tolist() == seen[1].tolist() == [1.0, 1.0]  # no history for the first two epochs
    assert np.allclose(seen[2], dwa_weights([2.0, 2.0], [1.0, 1.8]), rtol=1e-6)
    assert np.allclose(np.array(dwa.loss_weights), dwa_weights([1.0, 1.8], [0.5, 1.0]), rtol=1e-6)
    assert seen[2][1] > seen[2][0] and seen[2].sum() == pytest.approx(2.0)  # slower-falling emotion weighs more


def test_dwa_learns_each_epoch_end_while_fitting_and_weighs_the_total():
    dwa = create(loss_weighting="dwa", dwa_temperature=0.5)

    history = train(Trainer(toy_network(), dwa), toy_batch(), steps=1, epochs=3, learning_rate=1.0)

    gender, emotion = history["gender_loss"], history["emotion_loss"]
    expected = dwa_weights([gender[1], emotion[1]], [gender[2], emotion[2]], temperature=0.5)
    assert np.allclose(np.array(dwa.loss_weights), expected, rtol=1e-5)
    third_weights = dwa_weights([gender[0], emotion[0]], [gender[1], emotion[1]], temperature=0.5)
    assert history["loss"][2] == pytest.approx(third_weights @ [gender[2], emotion[2]], rel=1e-5)


# ---------------------------------------------------------------- PCGrad --------------------


def pcgrad_sum(first, second):
    """PCGrad's combined gradient of two heads, each given as [a (2,) gradient, a (1, 1) gradient]."""
    gradients = {
        GENDER: [tf.constant(first, tf.float32), tf.zeros((1, 1))],
        EMOTION: [tf.constant(second, tf.float32), tf.zeros((1, 1))],
    }
    combined = create(loss_weighting="pcgrad").combine_gradients({}, {}, gradients)
    assert [tuple(g.shape) for g in combined] == [(2,), (1, 1)]
    return np.array(combined[0])


def test_pcgrad_removes_the_component_along_a_conflicting_gradient():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])  # g1 . g2 = -1: they conflict
    g1_projected = g1 - (g1 @ g2) / (g2 @ g2) * g2  # (0.5, 0.5)
    g2_projected = g2 - (g2 @ g1) / (g1 @ g1) * g1  # (0, 1)
    assert g1_projected @ g2 == 0 and g2_projected @ g1 == 0

    assert np.allclose(pcgrad_sum(g1, g2), g1_projected + g2_projected)  # (0.5, 1.5), not the plain (0, 1)


def test_pcgrad_leaves_gradients_that_agree_unchanged():
    assert np.allclose(pcgrad_sum([1.0, 0.0], [1.0, 1.0]), [2.0, 1.0])


def test_pcgrad_gives_each_head_its_own_gradient():
    network = toy_network()
    emotion_before = layer_weights(network, EMOTION)

    train(Trainer(network, create(loss_weighting="pcgrad")), toy_batch(labelled=[GENDER]))

    assert all(np.array_equal(b, a) for b, a in zip(emotion_before, layer_weights(network, EMOTION)))


# ---------------------------------------------------------------- by name -------------------


def test_a_weighting_registered_outside_the_package_is_selectable_in_a_config():
    config = config_from_dict({"approach": "multitask", "options": {"loss_weighting": "gender_only"}})
    network = toy_network()
    emotion_before = layer_weights(network, EMOTION)

    train(Trainer(network, weighting.create(config.options, TASKS)), toy_batch())

    assert "gender_only" in weighting.names()
    assert all(np.array_equal(b, a) for b, a in zip(emotion_before, layer_weights(network, EMOTION)))


@weighting.register("summed_gradients")
class SummedGradients(Weighting):
    """A gradient weighting written outside the package that changes nothing: the plain sum."""

    needs_gradients = True

    def combine_gradients(self, losses, present, task_gradients):
        return [sum(per_head) for per_head in zip(*task_gradients.values())]


def test_a_gradient_weighting_that_sums_the_heads_gradients_trains_like_the_plain_sum():
    plain, per_head = toy_network(), toy_network()

    train(Trainer(plain), toy_batch())
    train(Trainer(per_head, create(loss_weighting="summed_gradients")), toy_batch())

    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(plain.get_weights(), per_head.get_weights()))
    assert not np.allclose(plain.get_weights()[0], toy_network().get_weights()[0])  # it did train


def test_an_unknown_weighting_is_a_user_error_naming_the_choices():
    with pytest.raises(UserError, match=r"loss weighting \(options.loss_weighting\) 'equal'; expected one of: .*dwa, fixed.*pcgrad"):
        create(loss_weighting="equal")


@pytest.mark.parametrize("name", weighting.names())
def test_every_weighting_trains_a_two_head_network_one_step(name):
    keras.utils.set_random_seed(3)
    network = build_network(ModelConfig(), DataConfig(), {GENDER: 2, EMOTION: 2}, name="multitask_model")
    convolution = next(layer for layer in network.layers if layer.weights)  # the backbone's first
    kernel_before = np.array(convolution.kernel)
    images = tf.random.uniform((8, 64, 64, 3), 0, 255)
    _, targets, weights = toy_batch()

    history = train(Trainer(network, create(loss_weighting=name)), (images, targets, weights), steps=1)

    assert np.isfinite(history["loss"][0])
    assert not np.array_equal(kernel_before, np.array(convolution.kernel))
