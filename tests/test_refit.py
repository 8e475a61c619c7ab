"""Refitting a run's heads with groups weighed alike (`mtl refit`, `mtl.refit`): a planted shortcut
that the plain fit follows and the balanced fit does not, the head's new weights answering as the
regression does, and the command on a run trained on the sample."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtl.config import DataConfig, ModelConfig
from mtl.data.sources import ImageSource
from mtl.errors import UserError
from mtl.models.build import build_network, inference_model
from mtl.refit import (Candidate, HeadFaces, answers_of, choose, fit_head, group_names, head_layer,
                       held_out_faces, scores_line, set_head)
from mtl.runs import TRAINED_HEAD, reference_labeller_path
from conftest import run_cli


def shortcut_faces(faces: int = 4000, agreeing: float = 0.95, seed: int = 0) -> HeadFaces:
    """Two-class faces whose features hold a weak true signal and a strong shortcut.

    The shortcut (think "smiling") agrees with the class for `agreeing` of the faces; the rest form
    the rare groups (a sad woman: class 0 with the shortcut of class 1). A face's group is its class
    x its shortcut value, as a head's group is its class x the other task's answer.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, faces)
    shortcut = np.where(rng.random(faces) < agreeing, labels, 1 - labels)
    signal = (2 * labels - 1) * 1.0 + rng.normal(0, 1.0, faces)  # alone about 84% right for every group
    cue = (2 * shortcut - 1) * 3.0 + rng.normal(0, 0.5, faces)
    features = np.stack([signal, cue, rng.normal(0, 1, faces)], axis=1).astype(np.float32)
    groups = np.array([f"class{label}|shortcut{value}" for label, value in zip(labels, shortcut)])
    trained = np.eye(2)[shortcut]  # a head that learnt the shortcut alone
    return HeadFaces(features, features[:, [0, 1, 2]], labels, groups, trained)


def rare_group_accuracy(faces: HeadFaces, answers: np.ndarray, indices: np.ndarray) -> float:
    rare = faces.groups[indices] != np.array([f"class{label}|shortcut{label}" for label in faces.labels[indices]])
    return float((answers[rare] == faces.labels[indices][rare]).mean())


def test_the_plain_fit_follows_a_planted_shortcut_and_the_balanced_fit_does_not():
    faces, held_out = shortcut_faces(seed=0), shortcut_faces(seed=1)
    everyone = np.arange(len(faces.labels))
    plain = fit_head(faces, everyone, Candidate(0.0, 1.0), seed=0)
    balanced = fit_head(faces, everyone, Candidate(1.0, 1.0), seed=0)
    plain_rare = rare_group_accuracy(held_out, answers_of(plain, held_out, everyone, mirror=False), everyone)
    balanced_rare = rare_group_accuracy(held_out, answers_of(balanced, held_out, everyone, mirror=False), everyone)
    assert plain_rare < 0.5  # the shortcut wins where it disagrees with the class
    assert balanced_rare > 0.75  # the true signal wins, near what it gives alone


def test_choosing_on_the_scoring_half_picks_a_balanced_fit_over_the_shortcut_head():
    chosen, scored = choose(shortcut_faces(), mirror=False, seed=0)
    by_name = {row["candidate"]: row for row in scored}
    assert chosen.alpha == 1.0
    assert by_name[chosen.name]["worst_group_accuracy"] > by_name[TRAINED_HEAD]["worst_group_accuracy"] + 0.5
    assert len(scored) == 10  # the trained head and 3 balance powers x 3 regularisations


def test_the_printed_verdict_names_each_worst_group_with_its_size():
    chosen, scored = choose(shortcut_faces(), mirror=False, seed=0)
    line = scores_line(scored, chosen.name)
    trained, best = scored[0], next(row for row in scored if row["candidate"] == chosen.name)
    assert line.startswith(f"refitted with {chosen.name} (scoring half: trained head")
    for row in (trained, best):
        assert f"{row['worst_group']} ({row['worst_group_images']} faces)" in line
    assert 0 < trained["worst_group_images"] < 200  # a rare group of the 2,000 scored faces


def test_the_trained_head_stays_where_no_refit_lifts_its_worst_group_beyond_the_noise():
    faces = shortcut_faces(agreeing=0.5)  # no shortcut to unlearn: the cue is noise
    from_signal = np.eye(2)[(faces.features[:, 0] > 0).astype(int)]  # a head that reads the true signal already
    faces = HeadFaces(faces.features, faces.mirrored, faces.labels, faces.groups, from_signal)
    chosen, scored = choose(faces, mirror=False, seed=0)
    assert chosen.name == TRAINED_HEAD
    assert max(row["worst_group_accuracy"] for row in scored[1:]) > 0.5  # the refits were fitted and scored


def test_a_refitted_dense_head_answers_as_the_regression_does():
    faces = shortcut_faces()
    regression = fit_head(faces, np.arange(len(faces.labels)), Candidate(0.5, 0.1), seed=0)
    head = keras.layers.Dense(2, activation="softmax")
    head.build((None, 3))
    set_head(head, regression)
    np.testing.assert_allclose(np.asarray(head(faces.features[:50])), regression.predict_proba(faces.features[:50]),
                               atol=1e-5)


def test_a_group_names_class_other_answer_short_source_and_attributes():
    source = ImageSource(
        "gender", np.array(["a.jpg", "b.jpg", "c.jpg"]),
        {"gender": np.array([0, 1, 0]), "emotion": np.array([-1, -1, -1]), "source": np.array([0, 1, 1])},
        {"age_band": np.array(["", "60+", "20-29"])},
    )
    names = group_names(source, "gender", np.array([1, 0, 0]), ["gender_training", "utkface_train"], ["age_band"])
    assert names.tolist() == ["female|sad|gender_training", "male|happy|utkface_train|60+", "female|happy|utkface_train|20-29"]


def tiny_two_head_model(seed: int, always_sad: bool = False) -> keras.Model:
    """A two-head inference model on 32x32 images; with `always_sad`, its emotion head answers sad for every face."""
    data, model = DataConfig(image_size=32), ModelConfig(backbone="lenet")
    keras.utils.set_random_seed(seed)
    network = build_network(model, data, {"gender": 2, "emotion": 2}, name="multitask_model")
    if always_sad:
        kernel, _ = network.get_layer("emotion").get_weights()
        network.get_layer("emotion").set_weights([np.zeros_like(kernel), np.array([-10.0, 10.0], np.float32)])
    return inference_model([network], data)


def test_the_faces_are_grouped_by_the_teachers_answers_for_the_other_task_when_teachers_are_given():
    faces = 12
    source = ImageSource("gender", np.array([f"{i}.png" for i in range(faces)]),
                         {"gender": np.arange(faces) % 2, "emotion": np.full(faces, -1)})
    images = np.random.default_rng(0).integers(0, 256, (faces, 32, 32, 3)).astype(np.uint8)
    examples = tf.data.Dataset.from_tensor_slices((images, dict(source.labels)))
    model, teachers = tiny_two_head_model(seed=1), tiny_two_head_model(seed=2, always_sad=True)

    own = held_out_faces(model, "gender", source, examples, ["gender_training"], [], batch_size=5)
    taught = held_out_faces(model, "gender", source, examples, ["gender_training"], [], batch_size=5, labeller=teachers)

    own_emotion = model.predict_on_batch(tf.cast(images, tf.float32))["emotion"].argmax(axis=1)
    assert [name.split("|")[1] for name in own.groups] == [("happy", "sad")[i] for i in own_emotion]
    assert any("|happy|" in name for name in own.groups)  # so the teachers' answers differ from the model's
    assert [name.split("|")[1] for name in taught.groups] == ["sad"] * faces
    np.testing.assert_array_equal(taught.features, own.features)  # the model's features and answers either way
    np.testing.assert_array_equal(taught.trained_answers, own.trained_answers)


def test_a_four_class_model_has_no_task_head_to_refit():
    data, model = DataConfig(image_size=32), ModelConfig(backbone="lenet")
    four_class = inference_model([build_network(model, data, {"four": 4}, name="four_class")], data)
    with pytest.raises(UserError, match="no gender head to refit"):
        head_layer(four_class, "gender")


@pytest.mark.slow
def test_mtl_refit_writes_a_new_evaluated_run_and_leaves_the_trained_one_as_it_was(trained_run, tmp_path):
    run_dir, _ = trained_run
    before = (run_dir / "model.keras").read_bytes()
    code, out, err = run_cli("refit", run_dir, "--runs-dir", tmp_path, "--name", "refitted")
    assert code == 0, err
    refitted = tmp_path / "refitted"
    record = json.loads((refitted / "refit.json").read_text())
    assert set(record["heads"]) == {"gender", "emotion"}
    assert record["from_run"] == run_dir.name
    for head in record["heads"].values():
        assert len(head["candidates_on_the_scoring_half"]) == 10
        assert all("|" in name and "/" not in name for name in head["groups"])  # short source names, no paths
    metrics, trained = (json.loads((run / "metrics.json").read_text()) for run in (refitted, run_dir))
    assert "gender_accuracy" in metrics["headline"]
    assert metrics["refit_seconds"] > 0 and metrics["training_seconds"] > trained["training_seconds"]
    assert metrics["gender_faces_seen"] == trained["gender_faces_seen"] > 0  # its network's training is its cost
    assert (run_dir / "model.keras").read_bytes() == before
    assert f"Run written to {refitted}" in out

    code, _, err = run_cli("refit", run_dir, "--runs-dir", tmp_path, "--name", "refitted")
    assert code == 2 and "already exists" in err  # never written over

    code, _, err = run_cli("refit", run_dir, "--runs-dir", tmp_path, "--name", "by-itself", "--teachers", run_dir)
    assert code == 0, err
    taught = json.loads((tmp_path / "by-itself" / "refit.json").read_text())
    assert record["other_task_answers_from"] == "the run's own model"
    assert taught["other_task_answers_from"] == run_dir.name  # a name, not this machine's path
    for task, head in taught["heads"].items():  # the run as its own teachers groups the faces as without them
        assert head["groups"] == record["heads"][task]["groups"]


@pytest.mark.slow
@pytest.mark.parametrize("option, refusal", [
    (("--heads", "four"), "--heads takes gender and/or emotion"),
    (("--attributes", "age_bnd"), "--attributes age_bnd: no training source has it"),
    (("--teachers", "nowhere"), "Teacher run 'nowhere' holds no model.keras"),
])
def test_mtl_refit_refuses_a_bad_option_in_one_sentence_before_writing_anything(trained_run, tmp_path, option, refusal):
    run_dir, _ = trained_run
    code, _, err = run_cli("refit", run_dir, "--runs-dir", tmp_path, *option)
    assert code == 2
    assert refusal in err and "Traceback" not in err
    assert not (tmp_path / f"{run_dir.name}-refit").exists()


def test_the_line_naming_the_model_says_which_heads_mtl_refit_changed(tmp_path):
    from mtl.predict import which_model

    (tmp_path / "refit.json").write_text(json.dumps({"heads": {"gender": {"chosen": "alpha=1, C=0.1"},
                                                               "emotion": {"chosen": TRAINED_HEAD}}}))
    assert "gender head refitted with groups weighed alike (mtl refit)" in which_model(tmp_path, bundled=False)
    (tmp_path / "refit.json").write_text(json.dumps({"heads": {"gender": {"chosen": TRAINED_HEAD}}}))
    assert "refitted" not in which_model(tmp_path, bundled=False)


@pytest.mark.slow
def test_a_comparison_variant_refits_each_seed_s_run_of_another_and_resumes_an_interrupted_refit(tmp_path):
    """`{"refit": {"of": ...}}` in `mtl compare`: no training of its own, the trained runs left as they were."""
    comparison = {
        "base": {"data": {"batch_size": 32}, "model": {"backbone": "lenet"},
                 "train": {"epochs": 1, "seed": 7}},
        "variants": {"multitask": {"approach": "multitask", "options": {"pseudo_labels": "none"}},
                     "multitask_refit": {"refit": {"of": "multitask", "heads": ["gender"],
                                                   "teachers": str(reference_labeller_path().parent)}}},
        "seeds": 2,
    }
    config_file = tmp_path / "comparison.json"
    config_file.write_text(json.dumps(comparison))
    command = ("compare", "--config", config_file, "--runs-dir", tmp_path, "--name", "cmp")
    code, out, err = run_cli(*command)
    assert code == 0, err
    root = tmp_path / "cmp"
    for seed in (0, 1):
        trained, refitted = root / "multitask" / f"seed-{seed}", root / "multitask_refit" / f"seed-{seed}"
        record = json.loads((refitted / "refit.json").read_text())
        assert list(record["heads"]) == ["gender"] and record["from_run"] == f"seed-{seed}"
        assert record["other_task_answers_from"] == "reference_labeller"
        assert json.loads((refitted / "config.json").read_text())["train"]["seed"] == 7 + seed
        spent, own = (json.loads((run / "metrics.json").read_text()) for run in (trained, refitted))
        assert own["gender_faces_seen"] == spent["gender_faces_seen"] > 0  # its network's training is its cost
        assert own["training_seconds"] > spent["training_seconds"]
    assert "multitask_refit" in (root / "results.md").read_text()

    (root / "multitask_refit" / "seed-1" / "metrics.json").unlink()  # as if killed before the end
    before = (root / "multitask" / "seed-1" / "model.keras").read_bytes()
    code, out, err = run_cli(*command)
    assert code == 0, err
    assert "multitask_refit/seed-0: finished earlier, kept" in out
    assert "multitask_refit/seed-1: multitask/seed-1 with its gender heads refitted" in out
    assert (root / "multitask_refit" / "seed-1" / "metrics.json").is_file()
    assert (root / "multitask" / "seed-1" / "model.keras").read_bytes() == before


@pytest.mark.parametrize("variant, refusal", [
    ({"refit": {"of": "nothing"}}, "refits 'nothing', which is not a variant that trains"),
    ({"refit": {"of": "multitask"}, "approach": "separate"}, "takes only"),
    ({"refit": {"of": "multitask", "head": ["gender"]}}, "unknown refit key 'head'"),
    ({"refit": {"of": "multitask", "heads": ["four"]}}, "refit heads must be a list of gender and/or emotion"),
    ({"refit": {"of": "multitask", "teachers": "nowhere"}}, "Teacher run 'nowhere' holds no model.keras"),
    ({"refit": {"of": "multitask", "teachers": ["a", "b"]}}, "refit teachers must be a run directory"),
])
def test_a_refit_variant_that_cannot_be_made_is_refused_in_one_sentence(variant, refusal):
    from mtl.compare import refit_variants

    spec = {"variants": {"multitask": {"approach": "multitask"}, "refitted": variant}}
    with pytest.raises(UserError, match=refusal):
        refit_variants(spec, ["multitask"])
