"""How fast does training run, and how much of the machine does it use? Training throughput of every
network the approaches train, against the machine's float32 matrix-product peak.

For each backbone, the networks `mtl train` fits (separate's gender and emotion networks,
crosslabel's four-class network, multitask's two-head network), each with the real trainer
(`Trainer` and the compiled step `fit` calls) fed by the real pipeline
(`approach.training_batches`) and, for reference, by one batch held in memory; medians after a
warm-up round. FLOPs of a training step are counted, not measured: 2 per multiply-add of the
convolution and dense layers in a forward pass (`mtl.models.cost.forward_multiply_adds`), times 3 for the forward
and the backward pass; batch normalisation, activations, pooling, augmentation and the optimizer
are left out, so the achieved FLOP/s understate the work a little. The peak is the median rate
of a warmed-up 2048x2048 float32 `tf.matmul`, measured at the start and the end of the same
run; the better of the two is the denominator. Target: the step at >= 50% of it.

For the comparison's network (ResNet, width 32, depth 1, two heads, batch 64) contenders try to
go faster: XLA (`jit_compile=True`), batch 32 and 128, and TensorFlow's inter-/intra-op thread
counts, each of those in a subprocess of this script, since they only take effect before
TensorFlow starts. Crosslabel's batches are read from cross-labelled shards written here by
untrained teachers: the labels do not change the cost. Writes JSON and Markdown under
experiments/results/benchmarks/:

    python experiments/benchmarks/training.py --data-dir ../shared/data --limit 4000
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from mtl import approaches, training  # noqa: E402
from mtl.config import config_from_dict  # noqa: E402
from mtl.models.build import inference_model  # noqa: E402
from mtl.models.cost import forward_multiply_adds  # noqa: E402
from mtl.pseudo_labels import cross_label  # noqa: E402

from common import (  # noqa: E402
    RESULTS, finished, first_pass, load_data, machine_lines, median_and_spread, ratio, rss_mib, started, step_rates,
)

# Each approach as `mtl compare` runs it by default (masked multitask, hard cross-labels).
APPROACH_OPTIONS = {"separate": {}, "crosslabel": {"pseudo_labels": "hard"}, "multitask": {"pseudo_labels": "none"}}
COMPARISON = {"backbone": "resnet", "approach": "multitask", "batch_size": 64}
# (inter-op, intra-op) threads; 0 lets TensorFlow choose (one per core).
THREAD_SETTINGS = [(0, 0), (1, 2), (2, 1)]
MEMORY, PIPELINE = "memory", "pipeline"


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Median GFLOP/s of a float32 size x size matrix product, after two untimed products."""
    a, b = tf.random.uniform((size, size)), tf.random.uniform((size, size))
    rates = []
    for repeat in range(repeats + 2):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()  # .numpy() waits for the product
        if repeat >= 2:
            rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return round(statistics.median(rates), 1)


def experiment_config(args, backbone: str, approach: str, batch_size: int):
    return config_from_dict({
        "approach": approach,
        "data": {"data_dir": args.data_dir, "batch_size": batch_size},
        # The residual networks at the comparison's size; LeNet has no size to set.
        "model": {"backbone": backbone if backbone == "lenet" else {"type": backbone, "width": 32, "depth": 1}},
        "options": APPROACH_OPTIONS[approach],
    })


def measure(config, data, stage, merged_dir, args, jit_compile="auto") -> dict:
    """One network's training step fed by its approach's batches and by one of them held in memory."""
    approach = approaches.get(config.approach.type)
    stage.trainer.compile(optimizer=training.make_optimizer(config.train, args.steps, args.steps * args.repeats), jit_compile=jit_compile)
    batches, _ = approach.training_batches(config, stage.name, data, merged_dir)
    memory = tf.data.Dataset.from_tensors(next(iter(batches))).repeat()
    batch_size = config.data.batch_size
    rates = step_rates(stage.trainer, {MEMORY: memory, PIPELINE: batches}, batch_size, args.steps, args.repeats)
    multiply_adds = forward_multiply_adds(stage.network)
    return {
        "backbone": config.model.backbone.type,
        "approach": config.approach.type,
        "network": stage.network.name,
        "batch_size": batch_size,
        "parameters": int(stage.network.count_params()),
        "forward_multiply_adds_per_image": multiply_adds,
        "training_flops_per_image": 3 * 2 * multiply_adds,
        "from_memory": median_and_spread(rates[MEMORY]["wall"]),
        "fed_by_pipeline": median_and_spread(rates[PIPELINE]["wall"]),
        "fed_over_memory": ratio(rates[PIPELINE]["wall"], rates[MEMORY]["wall"]),
        "fed_by_pipeline_per_cpu_second": median_and_spread(rates[PIPELINE]["cpu"]),
    }


def with_peak(row: dict, peak: float) -> dict:
    """`row` with the FLOP/s its pipeline-fed step achieved and their share of the matrix-product peak."""
    achieved = row["training_flops_per_image"] * row["fed_by_pipeline"]["median"] / 1e9
    return {**row, "achieved_gflops": round(achieved, 1), "share_of_peak": round(achieved / peak, 3)}


def cross_labelled_shards(args, data, folder: Path) -> Path:
    """Cross-labelled shards of the training images, labelled by untrained LeNet teachers (cost, not labels, matters)."""
    config = experiment_config(args, "lenet", "separate", COMPARISON["batch_size"])
    teacher = inference_model([stage.network for stage in approaches.get("separate").stages(config)], config.data)
    cross_label(teacher, data, folder / "crosslabeled")
    return folder / "crosslabeled"


def comparison_row(args, data, jit_compile="auto", batch_size: int = COMPARISON["batch_size"]) -> dict:
    """The comparison's network measured as `measure` does; `jit_compile` as `mtl train` leaves it unless given."""
    config = experiment_config(args, COMPARISON["backbone"], COMPARISON["approach"], batch_size)
    (stage,) = approaches.get(COMPARISON["approach"]).stages(config)
    return measure(config, data, stage, None, args, jit_compile)


def thread_rows(args) -> list[dict]:
    """The comparison's network under each thread setting, each in a fresh process of this script."""
    rows = []
    for inter, intra in THREAD_SETTINGS:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "row.json"
            command = [sys.executable, __file__, "--threads", f"{inter},{intra}", "--limit", str(args.limit),
                       "--steps", str(args.steps), "--repeats", str(args.repeats), "--out", str(out)]
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            subprocess.run(command, check=True)
            rows.append(json.loads(out.read_text()))
    return rows


def measure_threads(args) -> None:
    """In a subprocess of `thread_rows`: set the thread counts before TensorFlow starts, measure, write the row."""
    inter, intra = map(int, args.threads.split(","))
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    keras.utils.set_random_seed(0)
    data = load_data(experiment_config(args, "lenet", "multitask", COMPARISON["batch_size"]), args.limit)
    first_pass(data)
    row = comparison_row(args, data)
    setting = "TensorFlow's choice (one per core)" if (inter, intra) == (0, 0) else f"inter-op {inter}, intra-op {intra}"
    args.out.write_text(json.dumps({"contender": f"threads: {setting}", **row}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="datasets folder (default: the bundled sample)")
    parser.add_argument("--limit", type=int, default=4000, help="use at most this many training images")
    parser.add_argument("--backbones", default="lenet,resnet,dsresnet", help="comma-separated backbones")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-thread-contenders", action="store_true", help="skip the thread settings (a process each)")
    parser.add_argument("--threads", help=argparse.SUPPRESS)  # INTER,INTRA: one contender, run by thread_rows
    parser.add_argument("--out", type=Path, default=RESULTS / "training.json")
    args = parser.parse_args()
    if args.threads:
        measure_threads(args)
        return

    keras.utils.set_random_seed(0)
    head = started(args.data_dir)
    peak_before = matmul_gflops()
    print(f"float32 matmul peak: {peak_before} GFLOP/s", flush=True)
    data = load_data(experiment_config(args, "lenet", "multitask", COMPARISON["batch_size"]), args.limit)
    decode = first_pass(data)
    rows, contenders = [], []
    with tempfile.TemporaryDirectory() as folder:
        merged_dir = cross_labelled_shards(args, data, Path(folder))
        for backbone in args.backbones.split(","):
            for name in APPROACH_OPTIONS:
                config = experiment_config(args, backbone, name, COMPARISON["batch_size"])
                for stage in approaches.get(name).stages(config):
                    rows.append(measure(config, data, stage, merged_dir, args))
                    print(f"{backbone} {name} {stage.name}: {rows[-1]['fed_by_pipeline']} images/s", flush=True)
    contenders.append({"contender": "as mtl train runs it", **comparison_row(args, data)})
    contenders.append({"contender": "XLA (jit_compile=True)", **comparison_row(args, data, jit_compile=True)})
    for batch_size in (32, 128):
        contenders.append({"contender": f"batch {batch_size}", **comparison_row(args, data, batch_size=batch_size)})
    if not args.no_thread_contenders:
        contenders += thread_rows(args)
    peak_after = matmul_gflops()
    peak = max(peak_before, peak_after)

    result = {
        **head,
        "tensorflow": tf.__version__,
        "training_images": decode["images"],
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "matmul_2048_float32_gflops": {"start": peak_before, "end": peak_after},
        "peak_gflops": peak,
        "flops_counted": "analytic: 2 x multiply-adds of Conv2D/SeparableConv2D/Dense outputs, x 3 for a training step",
        "rows": [with_peak(row, peak) for row in rows],
        "comparison_contenders": [with_peak(row, peak) for row in contenders],
        "memory_at_end": rss_mib(),
    }
    finished(result, args.out, markdown)


def table(rows: list[dict], first: str, label) -> list[str]:
    """Markdown table of measured rows, the first column `first`, each row named by `label(row)`."""
    lines = [
        f"| {first} | batch | MFLOP per image (training) | from memory, images/s | fed by pipeline, images/s "
        "| fed / memory | fed, images per CPU-second | GFLOP/s | share of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        memory, fed = row["from_memory"], row["fed_by_pipeline"]
        lines.append(
            f"| {label(row)} | {row['batch_size']} | {row['training_flops_per_image'] / 1e6:.0f} | {memory['median']} "
            f"({memory['min']}-{memory['max']}) | {fed['median']} ({fed['min']}-{fed['max']}) | {row['fed_over_memory']:.0%} "
            f"| {row['fed_by_pipeline_per_cpu_second']['median']} | {row['achieved_gflops']} | {row['share_of_peak']:.0%} |"
        )
    return lines


def markdown(result: dict) -> str:
    peak = result["matmul_2048_float32_gflops"]
    lines = [
        *machine_lines(result, f" TensorFlow {result['tensorflow']}."),
        "",
        f"{result['training_images']} training images ({result['data_dir']}), default augmentation; medians of "
        f"{result['repeats']} repetitions of {result['steps_per_repeat']} steps (min-max) after a warm-up round. "
        f"Peak: float32 2048x2048 matmul, {peak['start']} GFLOP/s at start, {peak['end']} at end; "
        f"FLOPs {result['flops_counted']}. Peak RSS {result['memory_at_end']['peak_rss_mib']} MiB.",
        "",
        *table(result["rows"], "backbone, approach: network", lambda row: f"{row['backbone']}, {row['approach']}: {row['network']}"),
        "",
        "The comparison's network (ResNet, width 32, depth 1, two heads), contenders:",
        "",
        *table(result["comparison_contenders"], "contender", lambda row: row["contender"]),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
