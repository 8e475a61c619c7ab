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
from mtl.losses import per_example_cross_entropy
from mtl.weighting.base import Weighting, shared_representation
from mtl.weighting.mgda import min_norm_coefficients


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


def create(loss_weighting: str, **options):
    """The weighting `loss_weighting` with these options of its own, for the two tasks' heads."""
    return weighting.create(ApproachConfig(loss_weighting={"type": loss_weighting, **options}), TASKS)


# ---------------------------------------------------------------- fixed ---------------------


def test_fixed_weights_scale_each_head_loss_in_the_total():
    fixed = create("fixed", gender_weight=2.0, emotion_weight=0.5)
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
    dwa = create("dwa", temperature=0.5)

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


# ---------------------------------------------------------------- GradNorm ------------------


def representation_gradient_norms(network, batch):
    """Each head's loss and the norm of its gradient of the shared representation, on `batch`."""
    images, targets, _ = batch
    backbone, heads = shared_representation(network, TASKS)
    with tf.GradientTape(persistent=True) as tape:
        representation = backbone(images)
        losses = {head: tf.reduce_mean(per_example_cross_entropy(targets[head], heads[head](representation))) for head in TASKS}
    return {head: float(tf.norm(tape.gradient(losses[head], representation))) for head in TASKS}


def test_gradnorm_weights_move_to_balance_the_gradient_norms_of_heads_of_very_different_loss_scale():
    images, targets, weights = toy_batch(size=32)
    batch = (images, {GENDER: 10.0 * targets[GENDER], EMOTION: targets[EMOTION]}, weights)  # gender's loss x10
    network = toy_network()
    gradnorm = create(loss_weighting="gradnorm")
    norms = representation_gradient_norms(network, batch)
    assert norms[GENDER] / norms[EMOTION] > 5  # weights 1 and 1: gender's gradient dominates

    train(Trainer(network, gradnorm), batch, steps=200, learning_rate=0.01)

    gender_weight, emotion_weight = np.array(gradnorm.loss_weights)
    norms = representation_gradient_norms(network, batch)
    weighted_ratio = gender_weight * norms[GENDER] / (emotion_weight * norms[EMOTION])
    assert gender_weight < 0.5 < 1.5 < emotion_weight and gender_weight + emotion_weight == pytest.approx(2.0)
    assert 0.5 < weighted_ratio < 2  # the weighted gradient norms now within a factor 2, from more than 5


def test_gradnorm_weight_gradient_is_that_of_its_own_objective_with_the_target_held_constant():
    heads = ["a", "b", "c"]
    gradnorm = weighting.create(ApproachConfig(loss_weighting={"type": "gradnorm", "alpha": 1.5}), heads)
    gradnorm.loss_weights.assign([0.5, 1.0, 1.5])
    gradnorm.initial_losses.assign([2.0, 1.0, 1.0])
    losses = {"a": tf.constant(1.0), "b": tf.constant(0.8), "c": tf.constant(0.3)}
    gradients = {"a": [tf.constant([[3.0, 4.0]])], "b": [tf.constant([[0.0, 1.0]])], "c": [tf.constant([[1.0, 0.0]])]}
    present = {head: 1.0 for head in heads}

    with tf.GradientTape() as tape:
        weighted = gradnorm.loss_weights * tf.constant([5.0, 1.0, 1.0])  # w_i ||grad L_i||
        rates = np.array([1.0 / 2.0, 0.8, 0.3])  # L_i / L_i(0)
        target = tf.stop_gradient(tf.reduce_mean(weighted)) * (rates / rates.mean()) ** 1.5
        objective = tf.reduce_sum(tf.abs(weighted - target))
    expected = tape.gradient(objective, gradnorm.loss_weights)

    [got] = gradnorm.weight_gradients(losses, present, gradients, [None])
    assert np.allclose(np.array(got), np.array(expected))


def test_gradnorm_leaves_a_head_without_labels_out_of_its_objective():
    losses = {"a": tf.constant(1.0), "b": tf.constant(0.5), "c": tf.constant(0.0)}
    gradients = {"a": [tf.constant([[3.0, 4.0]])], "b": [tf.constant([[0.0, 1.0]])], "c": [tf.zeros((1, 2))]}
    three = weighting.create(ApproachConfig(loss_weighting="gradnorm"), ["a", "b", "c"])
    two = weighting.create(ApproachConfig(loss_weighting="gradnorm"), ["a", "b"])

    three.total_loss(losses, {"a": 1.0, "b": 1.0, "c": 0.0})
    two.total_loss(losses, {"a": 1.0, "b": 1.0})
    [with_c] = three.weight_gradients(losses, {"a": 1.0, "b": 1.0, "c": 0.0}, gradients, [None])
    [without_c] = two.weight_gradients(losses, {"a": 1.0, "b": 1.0}, gradients, [None])

    assert float(three.initial_losses[2]) == 0.0  # its first loss is still to come
    assert float(with_c[2]) == 0.0 and np.allclose(np.array(with_c[:2]), np.array(without_c))
    assert np.abs(np.array(without_c)).sum() > 0


# ---------------------------------------------------------------- MGDA-UB -------------------


def two_head_min_norm(g1, g2):
    """Sener and Koltun's closed form: the weight of g1 in the min-norm point of the segment [g1, g2]."""
    return float(np.clip((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0, 1))


def mgda_combination(first, second, present=(1.0, 1.0)):
    gradients = {GENDER: [tf.constant(first, tf.float32)], EMOTION: [tf.constant(second, tf.float32)]}
    [combined] = create(loss_weighting="mgda").combine_gradients({}, dict(zip(TASKS, present)), gradients)
    return np.array(combined)


def test_mgda_takes_the_min_norm_point_of_two_conflicting_gradients_which_decreases_both_losses():
    g1, g2 = np.array([[2.0, 0.0], [0.0, 0.0]]), np.array([[-1.0, 1.0], [0.0, 0.5]])  # g1 . g2 = -2: they conflict
    alpha = two_head_min_norm(g1.ravel(), g2.ravel())
    expected = alpha * g1 + (1 - alpha) * g2

    combined = mgda_combination(g1, g2)

    assert 0 < alpha < 1 and np.allclose(combined, expected, atol=1e-6)
    assert (combined * g1).sum() > 0 and (combined * g2).sum() > 0  # a step against it lowers both losses
    hull = [np.linalg.norm(a * g1 + (1 - a) * g2) for a in np.linspace(0, 1, 101)]
    assert np.linalg.norm(combined) <= min(hull) + 1e-6
    assert np.linalg.norm(combined) < np.linalg.norm((g1 + g2) / 2)  # not the plain average


def test_mgda_of_three_gradients_is_the_min_norm_point_of_their_hull():
    gradients = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])  # the origin lies inside: Pareto-stationary
    coefficients = min_norm_coefficients(tf.constant(gradients @ gradients.T, tf.float32), tf.ones(3), steps=200)

    assert np.linalg.norm(np.array(coefficients) @ gradients) < 0.05
    assert np.array(coefficients).sum() == pytest.approx(1.0) and (np.array(coefficients) >= 0).all()


def test_mgda_follows_the_only_head_with_labels():
    g1, g2 = np.array([[2.0, 0.0]]), np.array([[0.0, 0.0]])  # emotion unlabelled: its gradient is 0

    assert np.allclose(mgda_combination(g1, g2, present=(1.0, 0.0)), g1)  # not the min-norm point 0


def test_mgda_on_a_batch_of_one_task_trains_like_its_loss_alone_through_the_backbone_once():
    plain, mgda = toy_network(), toy_network()

    train(Trainer(plain), toy_batch(labelled=[GENDER]))
    train(Trainer(mgda, create(loss_weighting="mgda")), toy_batch(labelled=[GENDER]))

    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(plain.get_weights(), mgda.get_weights()))
    assert not np.allclose(plain.get_weights()[0], toy_network().get_weights()[0])  # it did train


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
    with pytest.raises(UserError, match=r"'options.loss_weighting' must be one of: .*dwa, fixed.*pcgrad.*, got 'equal'"):
        create("equal")


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
