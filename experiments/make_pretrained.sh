#!/usr/bin/env bash
# Train the two-head model that ships inside the package (mtl/pretrained/) on the full data
# (../shared/data), refit its heads on its validation faces with every group weighing the same
# (`mtl refit`), copy the refitted model there, and keep its config and metrics under
# experiments/results/pretrained/.
#   experiments/make_pretrained.sh [NAME]     # experiments/configs/pretrained.json, into runs/NAME and runs/NAME-refit
# The training takes hours on a 2-core CPU: the same command again resumes it after its last whole
# epoch (NAME defaults to pretrained-utk-20, so a plain rerun resumes, and one after it finished
# only refits and copies).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-pretrained-utk-20}"
# A finished run (it has its metrics.json) is not trained or refitted again: only the steps below run on it.
if [ ! -f "runs/$name/metrics.json" ]; then
    mtl train multitask --config experiments/configs/pretrained.json --data-dir ../shared/data --name "$name"
fi
if [ ! -f "runs/$name-refit/metrics.json" ]; then
    mtl refit "runs/$name" --data-dir ../shared/data --name "$name-refit"
fi
mkdir -p mtl/pretrained experiments/results/pretrained
cp "runs/$name-refit/model.keras" "runs/$name-refit/config.json" "runs/$name-refit/metrics.json" \
    "runs/$name-refit/refit.json" mtl/pretrained/
# The TFLite export that `mtl predict` answers with through LiteRT, made from the model just copied.
rm -f mtl/pretrained/model.tflite mtl/pretrained/model.tflite.json
mtl export --format tflite --output mtl/pretrained/model.tflite
cp "runs/$name-refit/config.json" "runs/$name-refit/metrics.json" "runs/$name-refit/refit.json" \
    "runs/$name-refit/evaluation/correct.npz" "runs/$name/multitask_training.json" experiments/results/pretrained/
