"""Training: masked losses, logged accuracy, where targets come from, mixing, cross-labelling."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl import labels, pseudo_labels
from mtl.approaches.batches import mixed_examples
from mtl.approaches.multitask import emotion_share
from mtl.config import ApproachConfig, DataConfig, ModelConfig, config_from_dict
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError
from mtl.losses import masked_cross_entropy
from mtl.models.build import build_network, inference_model
from mtl.tasks import CLASSES, EMOTION, FOUR, GENDER, MISSING, TASKS
from mtl.training import Trainer


@pytest.fixture(scope="module")
def sample_data():
    return ExperimentData.load(DataConfig(batch_size=16), seed=7)


@pytest.fixture(scope="module")
def gender_batch(sample_data):
    """16 real gender faces (float32) and their labels; none has an emotion label."""
    images, batch_labels = next(iter(sample_data.images(sample_data.gender_train).batch(16)))
    return tf.cast(images, tf.float32), batch_labels


def multitask_network(seed=0):
    keras.utils.set_random_seed(seed)
    return build_network(ModelConfig(), DataConfig(), {GENDER: 2, EMOTION: 2}, name="multitask_model")


def head_weights(network, head):
    return [np.array(variable) for variable in network.get_layer(head).weights]


def train_steps(trainer, images, targets, weights, steps=1):
    batches = tf.data.Dataset.from_tensors((images, targets, weights)).repeat()
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)


# ---------------------------------------------------------------- losses --------------------


def test_masked_cross_entropy_averages_over_labelled_examples_only():
    targets = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    probabilities = tf.constant([[0.8, 0.2], [0.4, 0.6], [0.01, 0.99]])

    loss = float(masked_cross_entropy(targets, probabilities, tf.constant([1.0, 1.0, 0.0])))

    assert loss == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2, rel=1e-5)
    assert float(masked_cross_entropy(targets, probabilities, tf.zeros(3))) == 0.0


def test_a_batch_without_emotion_labels_leaves_the_emotion_head_unchanged(gender_batch):
    images, batch_labels = gender_batch
    targets, weights = labels.task_targets(batch_labels, None, ApproachConfig(pseudo_labels="none"))
    assert float(tf.reduce_sum(weights[EMOTION])) == 0 and float(tf.reduce_sum(weights[GENDER])) == 16

    network = multitask_network()
    emotion_before, gender_before = head_weights(network, EMOTION), head_weights(network, GENDER)
    train_steps(Trainer(network), images, targets, weights)

    emotion_after, gender_after = head_weights(network, EMOTION), head_weights(network, GENDER)
    assert all(np.array_equal(b, a) for b, a in zip(emotion_before, emotion_after))  # kernel and bias
    assert not any(np.array_equal(b, a) for b, a in zip(gender_before, gender_after))


def test_training_logs_each_heads_accuracy_over_the_examples_with_its_label(sample_data):
    # Issue 9: two-head networks logged a training accuracy of 0 for both heads at every epoch.
    def eight_faces(split):  # shuffled, so both classes appear
        return next(iter(sample_data.images(split).shuffle(len(split), seed=1).batch(8)))

    gender_images, gender_labels = eight_faces(sample_data.gender_train)
    emotion_images, emotion_labels = eight_faces(sample_data.emotion_train)
    images = tf.cast(tf.concat([gender_images, emotion_images], 0), tf.float32)
    batch_labels = {task: tf.concat([gender_labels[task], emotion_labels[task]], 0) for task in TASKS}
    targets, weights = labels.task_targets(batch_labels, None, ApproachConfig(pseudo_labels="none"))
    keras.utils.set_random_seed(0)
    network = build_network(ModelConfig(dropout=0.0), DataConfig(), {GENDER: 2, EMOTION: 2}, name="multitask_model")
    # Without dropout and with a learning rate of 0, both training steps see exactly these outputs.
    outputs = network(images, training=True)
    trainer = Trainer(network)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))

    history = trainer.fit(
        tf.data.Dataset.from_tensors((images, targets, weights)).repeat(),
        validation_data=tf.data.Dataset.from_tensors((images, batch_labels)),
        steps_per_epoch=2,
        verbose=0,
    ).history

    for task in TASKS:
        labelled = weights[task].numpy() > 0
        expected = np.mean(outputs[task].numpy()[labelled].argmax(axis=1) == batch_labels[task].numpy()[labelled])
        assert 0 < expected < 1
        assert history[f"{task}_accuracy"] == [pytest.approx(expected)]
        assert history[f"val_{task}_accuracy"] == [pytest.approx(expected)]


# ---------------------------------------------------------------- targets -------------------

# Two gender faces (emotion missing) and one emotion face (gender missing).
LABELS = {GENDER: tf.constant([0, 1, MISSING]), EMOTION: tf.constant([MISSING, MISSING, 1])}
PREDICTIONS = {
    GENDER: tf.constant([[0.3, 0.7], [0.2, 0.8], [0.95, 0.05]]),
    EMOTION: tf.constant([[0.6, 0.4], [0.97, 0.03], [0.5, 0.5]]),
}


def targets_for(pseudo_labels, threshold=0.9):
    source = {"type": "threshold", "confidence": threshold} if pseudo_labels == "threshold" else pseudo_labels
    options = ApproachConfig(pseudo_labels=source)
    targets, weights = labels.task_targets(LABELS, PREDICTIONS, options)
    return {t: v.numpy() for t, v in targets.items()}, {t: v.numpy() for t, v in weights.items()}


def test_true_labels_are_one_hot_targets_whatever_the_label_source():
    for source in ("none", "hard", "soft", "threshold"):
        targets, weights = targets_for(source)
        assert targets[GENDER][:2].tolist() == [[1, 0], [0, 1]]  # the teacher's 0.7/0.8 are ignored
        assert targets[EMOTION][2].tolist() == [0, 1]
        assert weights[GENDER][:2].tolist() == [1, 1] and weights[EMOTION][2] == 1


def test_none_masks_the_missing_task():
    _, weights = targets_for("none")
    assert weights[EMOTION].tolist() == [0, 0, 1]
    assert weights[GENDER].tolist() == [1, 1, 0]
    # Without predictions every label source falls back to masking.
    _, no_teacher = labels.task_targets(LABELS, None, ApproachConfig(pseudo_labels="soft"))
    assert no_teacher[EMOTION].numpy().tolist() == [0, 0, 1]


def test_hard_takes_the_teachers_most_likely_class():
    targets, weights = targets_for("hard")
    assert targets[EMOTION][:2].tolist() == [[1, 0], [1, 0]]
    assert targets[GENDER][2].tolist() == [1, 0]
    assert weights[EMOTION].tolist() == [1, 1, 1] and weights[GENDER].tolist() == [1, 1, 1]


def test_soft_takes_the_teachers_probabilities():
    targets, weights = targets_for("soft")
    assert np.allclose(targets[EMOTION][:2], [[0.6, 0.4], [0.97, 0.03]])
    assert np.allclose(targets[GENDER][2], [0.95, 0.05])
    assert weights[EMOTION].tolist() == [1, 1, 1]


def test_threshold_drops_pseudo_labels_below_the_confidence_threshold():
    targets, weights = targets_for("threshold", threshold=0.9)
    assert weights[EMOTION].tolist() == [0, 1, 1]  # 0.6 dropped, 0.97 kept, true label kept
    assert weights[GENDER].tolist() == [1, 1, 1]  # 0.95 kept
    assert targets[EMOTION][1].tolist() == [1, 0]
    _, strict = targets_for("threshold", threshold=0.99)
    assert strict[EMOTION].tolist() == [0, 0, 1] and strict[GENDER].tolist() == [1, 1, 0]


def test_four_class_targets_are_the_outer_product_of_the_task_targets():
    options = ApproachConfig(pseudo_labels="soft")
    targets, weights = labels.task_targets(LABELS, PREDICTIONS, options)
    four, four_weights = labels.four_class_targets(LABELS, PREDICTIONS, options)

    expected = np.einsum("ne,ng->neg", targets[EMOTION].numpy(), targets[GENDER].numpy()).reshape(3, 4)
    assert np.allclose(four[FOUR].numpy(), expected)
    assert np.allclose(four[FOUR].numpy().sum(axis=1), 1)
    # First face: female for sure, emotion 0.6 happy -> [happy_female, happy_male, sad_female, sad_male].
    assert np.allclose(four[FOUR].numpy()[0], [0.6, 0, 0.4, 0])
    _, threshold_weights = labels.four_class_targets(LABELS, PREDICTIONS, ApproachConfig(pseudo_labels="threshold"))
    assert threshold_weights[FOUR].numpy().tolist() == [0, 1, 1]
    assert four_weights[FOUR].numpy().tolist() == [1, 1, 1]


# ---------------------------------------------------------------- mixing --------------------


def draw_sources(proportion, sizes=None, draws=2000):
    config = config_from_dict({"data": {"emotion_proportion": proportion}, "train": {"seed": 5}})
    gender = tf.data.Dataset.from_tensors(0).repeat(10)
    emotion = tf.data.Dataset.from_tensors(1).repeat(10)
    share = emotion_share(config, sizes or {GENDER: 10, EMOTION: 10})
    stream = mixed_examples(gender, emotion, share, config.train.seed)
    return np.fromiter(stream.take(draws).as_numpy_iterator(), int)


@pytest.mark.parametrize("proportion", [0.5, 0.25])
def test_mixed_batches_draw_emotion_faces_in_the_configured_proportion(proportion):
    drawn = draw_sources(proportion)
    assert len(drawn) == 2000  # endless: the small datasets repeat
    assert drawn.mean() == pytest.approx(proportion, abs=0.04)


def test_mixed_batches_default_to_the_natural_share():
    drawn = draw_sources(None, sizes={GENDER: 300, EMOTION: 100})
    assert drawn.mean() == pytest.approx(0.25, abs=0.04)


@pytest.mark.parametrize("proportion", [0.0, 1.0])
def test_emotion_proportion_must_be_strictly_between_0_and_1(proportion):
    with pytest.raises(UserError, match="emotion_proportion"):
        draw_sources(proportion)


# ---------------------------------------------------------------- cross-labelling -----------


@pytest.fixture(scope="module")
def teacher():
    """An (untrained) separate-style inference model: its predictions are what matters here."""
    keras.utils.set_random_seed(1)
    gender = build_network(ModelConfig(), DataConfig(), {GENDER: 2}, name="gender_model")
    emotion = build_network(ModelConfig(), DataConfig(), {EMOTION: 2}, name="emotion_model")
    return inference_model([gender, emotion], DataConfig())


@pytest.fixture(scope="module")
def merged(tmp_path_factory, teacher, sample_data):
    out = tmp_path_factory.mktemp("crosslabel") / "crosslabeled"
    summary = pseudo_labels.cross_label(teacher, sample_data, out, batch_size=40)
    return out, summary


def test_cross_labelling_stores_the_teachers_probabilities_for_each_image(merged, teacher, sample_data):
    out, _ = merged
    examples = list(pseudo_labels.read_merged(out).as_numpy_iterator())
    images = np.stack([image for image, _, _ in examples])

    predicted = teacher.predict_on_batch(images.astype(np.float32))

    assert images.dtype == np.uint8 and images.shape == (1280, 64, 64, 3)
    for task in TASKS:
        stored = np.stack([predictions[task] for _, _, predictions in examples])
        assert np.allclose(stored, predicted[task], atol=1e-5)
        assert np.allclose(stored.sum(axis=1), 1, atol=1e-5)


def test_cross_labelled_images_keep_their_true_labels_and_source(merged, sample_data):
    out, summary = merged

    for source, split, task in (("gender", sample_data.gender_train, GENDER), ("emotion", sample_data.emotion_train, EMOTION)):
        examples = list(pseudo_labels.read_merged(out, source=source).as_numpy_iterator())
        decoded = list(sample_data.images(split).as_numpy_iterator())
        assert len(examples) == len(split) == {"gender": 320, "emotion": 960}[source]
        # Same images, same order, same true labels; the other task stays missing (-1).
        assert all(np.array_equal(image, original) for (image, _, _), (original, _) in zip(examples, decoded))
        assert [int(lab[task]) for _, lab, _ in examples] == split.labels[task].tolist()
        other = EMOTION if task == GENDER else GENDER
        assert {int(lab[other]) for _, lab, _ in examples} == {MISSING}

    assert summary["examples"] == 1280
    assert json.loads((out / pseudo_labels.SUMMARY_FILE).read_text()) == summary
    assert (summary["by_source"]["gender"]["images"], summary["by_source"]["emotion"]["images"]) == (320, 960)
    assert 0.5 <= summary["by_source"]["gender"]["mean_confidence_on_missing_task"] <= 1


def test_cross_labelling_counts_each_source_by_its_class_and_the_teachers_answer_for_the_other_task(merged, sample_data):
    out, summary = merged
    expected = {}
    for source, task, other in (("gender", GENDER, EMOTION), ("emotion", EMOTION, GENDER)):
        for _, true, predictions in pseudo_labels.read_merged(out, source=source).as_numpy_iterator():
            key = f"{CLASSES[task][true[task]]}|{CLASSES[other][predictions[other].argmax()]}"
            expected[key] = expected.get(key, 0) + 1

    confound = summary["confound"]

    # The sample's one source per task, by its short name: no machine's path in the summary.
    assert list(confound) == ["gender_training", "fer2013_train"]
    assert confound["gender_training"]["task"] == GENDER and confound["fer2013_train"]["task"] == EMOTION
    counted = {key: count for table in confound.values() for key, count in table.items() if key != "task"}
    assert {key: count for key, count in counted.items() if count} == expected
    assert sum(expected.values()) == 1280


def test_the_confound_reads_as_one_sentence_per_source():
    confound = {
        "gender_training": {"task": GENDER, "female|happy": 81, "female|sad": 19, "male|happy": 63, "male|sad": 37},
        "fer2013_train": {"task": EMOTION, "happy|female": 49, "happy|male": 51, "sad|female": 0, "sad|male": 0},
    }

    assert pseudo_labels.confound_lines(confound) == [
        "gender_training: the teachers call happy 81% of its female faces and 63% of its male faces.",
        "fer2013_train: the teachers call female 49% of its happy faces and no sad faces.",
    ]


def test_cross_labelling_records_the_predicted_label_and_confidence_of_the_missing_task(merged):
    out, _ = merged
    files = sorted(str(path) for path in out.glob("merged-*.tfrecord"))
    for record in tf.data.TFRecordDataset(files).take(200):
        example = tf.io.parse_single_example(record, pseudo_labels._FEATURES)
        missing = EMOTION if example["source"].numpy() == b"gender" else GENDER
        probs = example[f"{missing}_probs"].numpy()
        assert int(example["predicted_label"]) == int(probs.argmax())
        assert float(example["confidence"]) == pytest.approx(float(probs.max()))


def test_cross_labelling_splits_large_sets_into_shards(tmp_path, monkeypatch, teacher, sample_data):
    monkeypatch.setattr(pseudo_labels, "EXAMPLES_PER_SHARD", 400)

    summary = pseudo_labels.cross_label(teacher, sample_data, tmp_path / "merged")

    shards = sorted(path.name for path in (tmp_path / "merged").glob("merged-*.tfrecord"))
    assert summary["shards"] == 4 and shards == [f"merged-{i:05d}-of-00004.tfrecord" for i in range(4)]
    assert sum(1 for _ in pseudo_labels.read_merged(tmp_path / "merged")) == 1280
    with pytest.raises(FileExistsError):  # never written over
        pseudo_labels.cross_label(teacher, sample_data, tmp_path / "merged")


def test_reading_a_folder_without_shards_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no cross-labelled shards"):
        pseudo_labels.read_merged(tmp_path)


# ---------------------------------------------------------------- divergence ----------------


def test_a_diverging_fit_stops_with_one_sentence_and_keeps_the_last_good_epoch(tmp_path):
    from mtl.training import Trainer, epochs_finished, fit
    from mtl.budget import Plan

    network = build_network(ModelConfig(backbone="lenet"), DataConfig(), {GENDER: 2}, name="gender_model")
    images = np.full((8, 64, 64, 3), 100.0, "float32")
    targets, weights = {GENDER: np.eye(2, dtype="float32")[[0, 1] * 4]}, {GENDER: np.ones(8, "float32")}
    finite = tf.data.Dataset.from_tensors((images, targets, weights))
    broken = tf.data.Dataset.from_tensors((images, {GENDER: np.full((8, 2), np.nan, "float32")}, weights))
    batches = finite.repeat(2).concatenate(broken.repeat())  # the second epoch meets a NaN loss
    validation = tf.data.Dataset.from_tensors((images, {GENDER: np.array([0, 1] * 4), EMOTION: -np.ones(8, "int64")}))

    with pytest.raises(UserError, match=r"diverged \(loss nan at epoch 2, step 1\).*kept in"):
        fit(Trainer(network), batches, validation, config_from_dict({}).train, Plan("network", 3, 2, 2), None, backup_dir=tmp_path / "backup")

    assert epochs_finished(tmp_path / "backup") == 1
