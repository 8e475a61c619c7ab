"""What a comparison's time is made of, and what each lever saves: the measured account of `mtl compare`.

Every part of a run that `mtl compare` makes, each timed with the real code on the real data:
- decoding and resizing the training and validation sources (once per run today: each run loads
  its data), and reading them back from a file cache (`data.cache` set to a folder, which every
  later run of the comparison would read instead);
- cross-labelling both training sets with two ResNet teachers (`pseudo_labels.cross_label`), which
  every variant with teachers does today, although variants of one seed share the same teachers;
- the training step of every network the comparison trains (the real trainer fed by the real
  batches, as `training.py` measures it), also in one continuous stretch of steps, as `fit` runs;
- one validation pass over both validation splits (`Trainer.evaluate`, as `fit` does after each
  part of its budget);
- scoring every test set (`evaluate.evaluate_run` on a saved, untrained model, flip averaging on,
  Happy House also on detected faces).
Each part's seconds, multiplied by how often the comparison needs it (its steps as the budget plans
them, its validation points, its runs), gives the comparison's time; each lever changes one part
by a measured ratio: input size 48 instead of 64 (FER2013's native size), evaluating in batches of
256, one file cache per comparison, one cross-labelled set per seed. Writes JSON and Markdown under
experiments/results/benchmarks/:

    python experiments/benchmarks/comparison_levers.py --data-dir ../shared/data \
        --config experiments/configs/compare_equal_examples.json
"""

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl import approaches, budget, training  # noqa: E402
from mtl.compare import equal_budgets, variant_configs  # noqa: E402
from mtl.config import merge  # noqa: E402
from mtl.data.pipeline import ExperimentData  # noqa: E402
from mtl.evaluate import evaluate_run  # noqa: E402
from mtl.experiment import save_model, stage_demand  # noqa: E402
from mtl.models.build import inference_model  # noqa: E402
from mtl.pseudo_labels import cross_label  # noqa: E402
from mtl.runs import MODEL_FILE, create_run  # noqa: E402

from common import RESULTS, finished, machine_lines, median_and_spread, relative, started, step_rates  # noqa: E402

SIZES = (64, 48)
TARGET_MINUTES = 60


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def decoding(config, folder: Path, file_cache: bool) -> dict:
    """Seconds to decode every training and validation source, in memory (today) and, with
    `file_cache`, into a file cache and back from it (what a later run of the comparison would do)."""
    sources = lambda data: (data.gender_train, data.gender_validation, data.emotion_train, data.emotion_validation)  # noqa: E731
    count = lambda data: sum(1 for source in sources(data) for _ in data.images(source))  # noqa: E731
    memory, images = timed(lambda: count(ExperimentData.load(config.data, config.train.seed)))
    if not file_cache:
        return {"images": images, "decode_seconds": round(memory, 1)}
    cached = dataclasses.replace(config.data, cache=str(folder / "cache"))
    written, _ = timed(lambda: count(ExperimentData.load(cached, config.train.seed)))
    read, _ = timed(lambda: count(ExperimentData.load(cached, config.train.seed)))
    return {"images": images, "decode_seconds": round(memory, 1), "write_file_cache_seconds": round(written, 1),
            "read_file_cache_seconds": round(read, 1)}


def stage_plans(config, data: ExperimentData, merged_dir: Path | None) -> list[tuple]:
    """(stage, its batches, its plan) of every stage of `config`'s approach, as `train_approach` plans them."""
    approach = approaches.get(config.approach.type)
    stages = approach.stages(config)
    batches = {stage.name: approach.training_batches(config, stage.name, data, merged_dir) for stage in stages}
    demands = [stage_demand(approach, config, stage, data, batches[stage.name][1]) for stage in stages]
    return [(stage, batches[stage.name][0], budget.plan(config.train.budget, demands, demand))
            for stage, demand in zip(stages, demands)]


def step_seconds(stage, batches, config, args) -> dict:
    """Seconds per training step of one stage: median of short repetitions, and over one continuous stretch."""
    stage.trainer.compile(optimizer=training.make_optimizer(config.train, args.steps, args.steps * args.repeats))
    rates = step_rates(stage.trainer, {"pipeline": batches}, config.data.batch_size, args.steps, args.repeats)["pipeline"]
    iterator = iter(batches)
    seconds, _ = timed(lambda: [stage.trainer.train_function(iterator) for _ in range(args.stretch)])
    return {"images_per_second": median_and_spread(rates["wall"]),
            "seconds_per_step": round(config.data.batch_size / median_and_spread(rates["wall"])["median"], 4),
            "seconds_per_step_continuous": round(seconds / args.stretch, 4)}


def evaluation_seconds(config, stages, folder: Path, batch_size: int) -> float:
    """Seconds of `evaluate_run` (every test set, figures written) on the stages' untrained networks, saved as a run."""
    run_dir = folder / f"run-{config.data.image_size}-{batch_size}"
    create_run(run_dir, config)
    save_model(inference_model([stage.network for stage in stages], config.data, config.model.flip_test_time_augmentation),
               run_dir / MODEL_FILE)
    seconds, _ = timed(lambda: evaluate_run(run_dir, dataclasses.replace(config.data, batch_size=batch_size), run_dir / "evaluation"))
    shutil.rmtree(run_dir)
    return round(seconds, 1)


def teachers_for(config):
    """Two untrained ResNet teachers as one inference model: labelling costs the same whatever they learnt."""
    separate = merge(config, {"approach": "separate", "options": {"pseudo_labels": "none", "teachers": None}})
    return inference_model([stage.network for stage in approaches.get("separate").stages(separate)], separate.data)


def measure_size(configs: dict, size: int, folder: Path, args) -> dict:
    """Every part of the comparison at input size `size`."""
    configs = {name: merge(config, {"data": {"image_size": size}}) for name, config in configs.items()}
    first = next(iter(configs.values()))
    result = {"decoding": decoding(first, folder / f"decode-{size}", file_cache=size == SIZES[0])}
    data = ExperimentData.load(first.data, first.train.seed)
    merged_dir = folder / f"merged-{size}"
    seconds, _ = timed(lambda: cross_label(teachers_for(first), data, merged_dir))
    result["cross_label_seconds"] = round(seconds, 1)
    result["variants"], networks = {}, {}
    for name, config in configs.items():
        needs = approaches.get(config.approach.type).needs_teachers(config)
        plans = stage_plans(config, data, merged_dir if needs else None)
        stages = []
        for stage, batches, plan in plans:
            key = (config.approach.type, stage.network.name)
            if key not in networks:  # variants that train the same network (other labels) step alike
                print(f"{size} px: timing {name}'s {stage.network.name}", flush=True)
                networks[key] = step_seconds(stage, batches, config, args)
                compiled = stage
            stages.append({"stage": stage.name, "network": stage.network.name, "steps": plan.steps,
                           "validations": plan.evaluations, **networks[key]})
        result["variants"][name] = {"needs_teachers": needs, "stages": stages}
    result["validation_seconds"] = round(timed(lambda: compiled.trainer.evaluate(data.validation(), verbose=0))[0], 1)
    multitask = next(config for config in configs.values() if config.approach.type == "multitask")
    evaluated = [stage for stage, _, _ in stage_plans(multitask, data, None)]
    batch_sizes = (first.data.batch_size, args.eval_batch)
    if size == SIZES[0]:  # untimed: the reference labeller's answers, which a comparison computes once per process
        evaluation_seconds(multitask, evaluated, folder, first.data.batch_size)
    result["evaluation_seconds"] = {str(batch): evaluation_seconds(multitask, evaluated, folder, batch) for batch in batch_sizes}
    return result


def run_seconds(variant: dict, size: dict, levers: set[str], per_seed_teacher_variants: int) -> float:
    """One run's seconds from the measured parts, with `levers` applied."""
    decoding = size["decoding"]
    seconds = decoding["decode_seconds"]
    if "file_cache" in levers:  # the same ratio at every size: reading back costs what it costs at 64 px
        seconds *= size["file_cache_over_decode"]
    if variant["needs_teachers"]:
        share = 1 / per_seed_teacher_variants if "shared_cross_labels" in levers else 1
        seconds += size["cross_label_seconds"] * share
    validations = 0.5 if "half_the_validations" in levers else 1
    for stage in variant["stages"]:
        seconds += stage["steps"] * stage["seconds_per_step_continuous"]
        seconds += stage["validations"] * validations * size["validation_seconds"]
    batch = max(size["evaluation_seconds"], key=int) if "eval_batch" in levers else min(size["evaluation_seconds"], key=int)
    return seconds + size["evaluation_seconds"][batch]


def projection(result: dict, seeds: int) -> list[dict]:
    """The comparison's minutes today and with each lever, alone and together."""
    teacher_variants = sum(variant["needs_teachers"] for variant in result["sizes"]["64"]["variants"].values())
    rows = []
    for label, size, levers in [
        ("today", "64", set()),
        ("one file cache per comparison", "64", {"file_cache"}),
        ("one cross-labelled set per seed", "64", {"shared_cross_labels"}),
        (f"evaluation in batches of {result['eval_batch']}", "64", {"eval_batch"}),
        ("validation at half the points (4 instead of train.budget.points 8)", "64", {"half_the_validations"}),
        ("one file cache and one cross-labelled set", "64", {"file_cache", "shared_cross_labels"}),
        ("input 48 px", "48", set()),
        ("input 48 px, one file cache and one cross-labelled set", "48", {"file_cache", "shared_cross_labels"}),
    ]:
        measured = result["sizes"][size]
        minutes = seeds * sum(run_seconds(variant, measured, levers, max(teacher_variants, 1))
                              for variant in measured["variants"].values()) / 60
        if "file_cache" in levers:  # the first run of the comparison still decodes, and writes the cache
            minutes += measured["decoding"]["decode_seconds"] * (1 - measured["file_cache_over_decode"]) / 60
        rows.append({"lever": label, "minutes": round(minutes, 1)})
    today = rows[0]["minutes"]
    for row in rows:
        row["ratio"] = round(today / row["minutes"], 3)
    return rows


def markdown(result: dict) -> str:
    today, big = result["sizes"]["64"], result["sizes"]["48"]
    lines = [*machine_lines(result), "",
             f"The comparison `{result['config']}` ({len(today['variants'])} variants x {result['seeds']} seeds, "
             f"budget `{result['budget']}`), each part of a run timed with the real code on `{result['data_dir']}`.",
             "", "| part | 64 px | 48 px | 48 / 64 |", "|---|---|---|---|"]
    decode = lambda size: size["decoding"]["decode_seconds"]  # noqa: E731
    lines.append(f"| decode every source (s, {today['decoding']['images']} images) | {decode(today)} | {decode(big)} | {decode(big) / decode(today):.2f} |")
    lines.append(f"| read them from a file cache (s) | {today['decoding']['read_file_cache_seconds']} | | |")
    lines.append(f"| cross-label both training sets (s) | {today['cross_label_seconds']} | {big['cross_label_seconds']} | {big['cross_label_seconds'] / today['cross_label_seconds']:.2f} |")
    lines.append(f"| one validation pass (s) | {today['validation_seconds']} | {big['validation_seconds']} | {big['validation_seconds'] / today['validation_seconds']:.2f} |")
    batch = str(result["batch_size"])
    lines.append(f"| score every test set, batches of {batch} (s) | {today['evaluation_seconds'][batch]} | {big['evaluation_seconds'][batch]} | {big['evaluation_seconds'][batch] / today['evaluation_seconds'][batch]:.2f} |")
    batch = str(result["eval_batch"])
    lines.append(f"| score every test set, batches of {batch} (s) | {today['evaluation_seconds'][batch]} | {big['evaluation_seconds'][batch]} | {big['evaluation_seconds'][batch] / today['evaluation_seconds'][batch]:.2f} |")
    seen = set()
    for name, variant in today["variants"].items():
        for stage, other in zip(variant["stages"], big["variants"][name]["stages"]):
            if stage["network"] in seen:
                continue
            seen.add(stage["network"])
            a, b = stage["seconds_per_step_continuous"], other["seconds_per_step_continuous"]
            lines.append(f"| {stage['network']}: s per step, continuous (short repetitions) | {a} ({stage['seconds_per_step']}) | "
                         f"{b} ({other['seconds_per_step']}) | {b / a:.2f} |")
    lines += ["", "| variant | stage | steps | validation points |", "|---|---|---|---|"]
    for name, variant in today["variants"].items():
        for stage in variant["stages"]:
            lines.append(f"| {name} | {stage['stage']} | {stage['steps']} | {stage['validations']} |")
    lines += ["", f"The comparison's time from those parts (target: {TARGET_MINUTES} minutes):", "",
              "| lever | minutes | today / this |", "|---|---|---|"]
    lines += [f"| {row['lever']} | {row['minutes']} | {row['ratio']} |" for row in result["projection"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("experiments/configs/compare_equal_examples.json"))
    parser.add_argument("--data-dir", default=None, help="datasets folder (default: the bundled sample)")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stretch", type=int, default=30, help="training steps timed in one continuous stretch")
    parser.add_argument("--eval-batch", type=int, default=256, help="the larger evaluation batch tried")
    parser.add_argument("--out", type=Path, default=RESULTS / "comparison_levers.json")
    args = parser.parse_args()
    spec = json.loads(args.config.read_text())
    base = spec.get("base", {})
    spec = {**spec, "base": {**base, "data": {**base.get("data", {}), "data_dir": args.data_dir}}}  # None: the sample
    configs = variant_configs(spec)
    configs = equal_budgets(configs, spec.get("baseline") or next(iter(configs)))
    first = next(iter(configs.values()))
    keras.utils.set_random_seed(0)
    result = started(args.data_dir, config=relative(str(args.config)), seeds=spec.get("seeds", 1),
                     budget=first.train.budget.kind, batch_size=first.data.batch_size, eval_batch=args.eval_batch,
                     tensorflow=tf.__version__)
    with tempfile.TemporaryDirectory() as folder:
        result["sizes"] = {str(size): measure_size(configs, size, Path(folder), args) for size in SIZES}
    at_64 = result["sizes"][str(SIZES[0])]["decoding"]
    for measured in result["sizes"].values():
        measured["file_cache_over_decode"] = round(at_64["read_file_cache_seconds"] / at_64["decode_seconds"], 3)
    result["projection"] = projection(result, result["seeds"])
    finished(result, args.out, markdown)


if __name__ == "__main__":
    main()
