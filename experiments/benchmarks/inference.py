"""What answering costs: the saved inference model of each approach, as `mtl predict` and `mtl evaluate` run it.

For one backbone, the inference models `mtl train` saves for `separate` (two networks, one after
the other inside one model), `crosslabel` (one four-class network) and `multitask` (one network,
two heads): latency at batch 1 and throughput at batch 256 (medians after a warm-up, contenders
taking turns), parameters, multiply-adds and file size. Writes JSON and Markdown under
experiments/results/benchmarks/:

    python experiments/benchmarks/inference.py --backbone resnet
"""

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

from mtl import approaches  # noqa: E402
from mtl.config import config_from_dict  # noqa: E402
from mtl.models.build import inference_model  # noqa: E402
from mtl.models.cost import forward_multiply_adds  # noqa: E402
from mtl.provenance import provenance  # noqa: E402

from common import RESULTS  # noqa: E402


def seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "inference.json")
    args = parser.parse_args()

    models = {}
    for name in ("separate", "crosslabel", "multitask"):
        config = config_from_dict({"approach": name, "model": {"backbone": args.backbone}})
        networks = [stage.network for stage in approaches.get(name).stages(config)]
        models[name] = (inference_model(networks, config.data), networks)
    rng = np.random.default_rng(0)
    one, many = (rng.uniform(0, 255, (size, 64, 64, 3)).astype("float32") for size in (1, 256))
    for model, _ in models.values():  # warm-up: tracing and first allocations
        model.predict_on_batch(one), model.predict_on_batch(many)

    latency = {name: [] for name in models}
    throughput = {name: [] for name in models}
    for _ in range(args.repeats):  # contenders take turns, so load changes hit them alike
        for name, (model, _) in models.items():
            latency[name].append(seconds(lambda: model.predict_on_batch(one), 5) * 1000)
            throughput[name].append(256 / seconds(lambda: model.predict_on_batch(many), 1))

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (model, networks) in models.items():
            path = Path(folder) / f"{name}.keras"
            model.save(path)
            rows.append({
                "approach": name,
                "networks": len(networks),
                "parameters": int(model.count_params()),
                "multiply_adds": sum(forward_multiply_adds(network) for network in networks),
                "file_bytes": path.stat().st_size,
                "latency_ms_batch_1": round(statistics.median(latency[name]), 2),
                "images_per_second_batch_256": round(statistics.median(throughput[name])),
            })
    separate = next(row for row in rows if row["approach"] == "separate")
    for row in rows:
        row["throughput_vs_separate"] = round(row["images_per_second_batch_256"] / separate["images_per_second_batch_256"], 2)

    made = provenance()
    load = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"backbone": args.backbone, "load_average": load, "provenance": made, "rows": rows}, indent=2) + "\n")
    columns = list(rows[0])
    lines = [
        f"Machine: {made['cpu']}, {made['cpu_count']} cores; load average {[round(x, 2) for x in load]} at the end. "
        f"TensorFlow {made['tensorflow']}, commit {made['commit']}.",
        f"Command: `python experiments/benchmarks/inference.py --backbone {args.backbone}` "
        f"(medians of {args.repeats} turns; untrained weights, which cost the same as trained ones).",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(row[column]) for column in columns) + " |" for row in rows),
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
