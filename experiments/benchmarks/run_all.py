"""Every benchmark in one command, then experiments/results/benchmarks/README.md summarising them.

Runs, one after the other and each in its own process: pipeline, training, inference, memory,
prepared (when `prepared.py` is there), cross_label, comparison_levers and, given a finished
comparison, accuracy_per_cost. Each writes its JSON and Markdown beside the README. The full
settings were sized for about 25 minutes on a quiet 2-core Xeon, before comparison_levers (about 15
minutes more on the slower 2-core EPYC it was measured on; the README records the real time); `--smoke` runs each on a few
steps of the bundled sample, into another folder:

    python experiments/benchmarks/run_all.py --data-dir ../shared/data --compare-root runs/compare_full_3seeds
    python experiments/benchmarks/run_all.py --smoke --results-dir /tmp/benchmarks

The README's part below the marker line is written by hand and kept as it is.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, machine, relative

HERE = Path(__file__).resolve().parent
MARKER = "<!-- Written by hand below this line; run_all.py keeps it. -->"
# name: (arguments of the full run, arguments of a smoke run, whether it reads --data-dir)
BENCHMARKS = {
    "pipeline": (["--limit", "4000"], ["--steps", "2", "--repeats", "1"], True),
    "training": (["--limit", "4000"], ["--backbones", "lenet", "--steps", "2", "--repeats", "1", "--no-thread-contenders"], True),
    "inference": (["--backbone", "resnet"], ["--repeats", "1"], False),
    "memory": ([], ["--fractions", "0.25"], True),
    "prepared": ([], ["--sample", "--epochs", "2"], True),  # run only when prepared.py is there
    "cross_label": ([], ["--limit", "200", "--repeats", "1"], True),
    "comparison_levers": ([], ["--steps", "1", "--repeats", "1", "--stretch", "2"], True),
}


def run(name: str, arguments: list[str]) -> dict:
    """Run one benchmark script; its wall seconds and exit status."""
    command = [sys.executable, str(HERE / f"{name}.py"), *arguments]
    print(f"\n=== {name}: {' '.join(map(relative, command[1:]))}", flush=True)
    start = time.perf_counter()
    status = subprocess.run(command).returncode
    seconds = round(time.perf_counter() - start)
    print(f"=== {name}: {'done' if status == 0 else f'FAILED (exit {status})'} in {seconds} s", flush=True)
    return {"seconds": seconds, "exit_status": status}


def out_arguments(results: Path, name: str) -> list[str]:
    """`--out` into `results`, left out for the default folder so each result records the command a reader would type."""
    return [] if results.resolve() == RESULTS else ["--out", str(results / f"{name}.json")]


def read(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pipeline_summary(result: dict) -> list[str]:
    decode, notebook = result["first_pass_decode_and_cache"], result.get("first_pass_notebook_loader")
    lines = [f"- first pass (decode, resize, cache), tf.data: {decode['images_per_second']} images/s"]
    if notebook:
        lines.append(
            f"- first pass, the notebook's loader ({notebook['reader']}): {notebook['images_per_second']} images/s "
            f"({notebook['images_per_second'] / decode['images_per_second']:.2f}x tf.data), the list holding "
            f"{notebook['rss_added_mib']} MiB; peak RSS of the whole benchmark {result['memory_at_end']['peak_rss_mib']} MiB"
        )
    lines += [
        f"- training step fed by each contender, per CPU-second, as a share of the step on one batch in memory "
        f"({result['training_from_memory_per_cpu_second']['median']} images per CPU-second; target >= 90%):",
        "",
        "| contender | fed / memory, per CPU-second | pipeline alone, images/s |",
        "|---|---|---|",
        *(f"| {row['contender']} | {row['fed_over_memory_per_cpu_second']:.0%} | {row['pipeline_alone']['median']} |"
          for row in result["rows"]),
    ]
    return lines


def training_summary(result: dict) -> list[str]:
    contenders = result["comparison_contenders"]
    baseline = next(row for row in contenders if row["contender"] == "as mtl train runs it")
    return [
        f"- float32 2048x2048 matmul peak: {result['peak_gflops']} GFLOP/s; target: the step at >= 50% of it",
        "",
        "| network | fed by pipeline, images/s | fed / memory | GFLOP/s | share of peak |",
        "|---|---|---|---|---|",
        *(f"| {row['backbone']}, {row['approach']}: {row['network']} | {row['fed_by_pipeline']['median']} | "
          f"{row['fed_over_memory']:.0%} | {row['achieved_gflops']} | {row['share_of_peak']:.0%} |" for row in result["rows"]),
        "",
        "The comparison's network (ResNet, width 32, depth 1, two heads), contenders against the step as `mtl train` runs it:",
        "",
        "| contender | fed by pipeline, images/s | ratio | per CPU-second | share of peak |",
        "|---|---|---|---|---|",
        *(f"| {row['contender']} | {row['fed_by_pipeline']['median']} | "
          f"{row['fed_by_pipeline']['median'] / baseline['fed_by_pipeline']['median']:.2f} | "
          f"{row['fed_by_pipeline_per_cpu_second']['median']} | {row['share_of_peak']:.0%} |" for row in contenders),
    ]


def inference_summary(result: dict) -> list[str]:
    return [
        f"| approach ({result['backbone']}) | latency, ms (batch 1) | images/s (batch 256) | throughput / separate |",
        "|---|---|---|---|",
        *(f"| {row['approach']} | {row['latency_ms_batch_1']} | {row['images_per_second_batch_256']} | "
          f"{row['throughput_vs_separate']:.2f} |" for row in result["rows"]),
    ]


def memory_summary(result: dict) -> list[str]:
    by_cache = {(row["fraction"], row["cache"]): row for row in result["rows"]}
    lines = [
        "| fraction of gender/Training | images | peak RSS, cache in memory, MiB | peak RSS, no cache, MiB | memory / none | seconds, memory / none |",
        "|---|---|---|---|---|---|",
    ]
    for fraction in dict.fromkeys(row["fraction"] for row in result["rows"]):
        cached, uncached = by_cache.get((fraction, "memory")), by_cache.get((fraction, "none"))
        if cached and uncached:
            lines.append(
                f"| {fraction:.0%} | {cached['gender_training_images']} | {cached['peak_rss_mib']} | {uncached['peak_rss_mib']} | "
                f"{cached['peak_rss_mib'] / uncached['peak_rss_mib']:.2f} | {cached['seconds']} / {uncached['seconds']} |"
            )
    return lines


SUMMARIES = {"pipeline": pipeline_summary, "training": training_summary, "inference": inference_summary, "memory": memory_summary}


def readme(results: Path, timings: dict, command: str) -> str:
    """The generated part of the README: machine, timings and each benchmark's summary; the hand-written part after it."""
    info = machine()
    total = sum(timing["seconds"] for timing in timings.values())
    lines = [
        "# Benchmarks of real runs",
        "",
        f"Made by `{command}` in {total / 60:.1f} minutes on {info['cpu']}, {info['cores']} cores "
        f"(load average {info['load_average']} at the end). Each section's command wrote the files it names.",
        "",
        "| benchmark | seconds | status |",
        "|---|---|---|",
        *(f"| {name} | {timing['seconds']} | {'ok' if timing['exit_status'] == 0 else 'failed, exit ' + str(timing['exit_status'])} |"
          for name, timing in timings.items()),
    ]
    for name in timings:
        result = read(results, name)
        if result is None or timings[name]["exit_status"] != 0:
            continue
        lines += ["", f"## {name} (`{name}.md`, `{name}.json`)", ""]
        if name in SUMMARIES:
            lines += [f"    {result['command']}", ""] if "command" in result else []
            lines += SUMMARIES[name](result)
        else:  # written by another script than these: its own Markdown says it best
            lines += [(results / f"{name}.md").read_text().rstrip()]
        if name == "accuracy_per_cost":
            lines += ["", f"![accuracy against CPU-minutes]({name}.png)"]
    path = results / "README.md"
    kept = path.read_text().split(MARKER, 1)[1] if path.is_file() and MARKER in path.read_text() else "\n"
    return "\n".join(lines) + "\n\n" + MARKER + kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="datasets folder (default: the bundled sample)")
    parser.add_argument("--compare-root", default=None, help="a finished `mtl compare` folder, for accuracy_per_cost")
    parser.add_argument("--smoke", action="store_true", help="a few steps of each benchmark, to check they run")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    args.results_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    for name, (full, smoke, reads_data) in BENCHMARKS.items():
        if not (HERE / f"{name}.py").is_file():
            print(f"\n=== {name}: no {name}.py here, left out", flush=True)
            continue
        data = ["--data-dir", args.data_dir] if reads_data and args.data_dir else []
        timings[name] = run(name, [*(smoke if args.smoke else full), *data, *out_arguments(args.results_dir, name)])
    if args.compare_root:
        timings["accuracy_per_cost"] = run("accuracy_per_cost", [args.compare_root, *out_arguments(args.results_dir, "accuracy_per_cost")])

    command = " ".join(["python", *map(relative, sys.argv)])
    (args.results_dir / "README.md").write_text(readme(args.results_dir, timings, command))
    total = sum(timing["seconds"] for timing in timings.values())
    print(f"\nAll benchmarks: {total} s ({total / 60:.1f} minutes); summary in {relative(str(args.results_dir / 'README.md'))}")
    if any(timing["exit_status"] for timing in timings.values()):
        sys.exit("Some benchmarks failed; see above.")


if __name__ == "__main__":
    main()
