#!/usr/bin/env bash
# Train the two-head model that ships inside the package (mtl/pretrained/) on the full data
# (../shared/data), copy it there, and keep its config and metrics under experiments/results/pretrained/.
#   experiments/make_pretrained.sh [NAME]     # experiments/configs/pretrained.json, into runs/NAME
# The run takes hours on a 2-core CPU: the same command again resumes it after its last whole epoch
# (NAME defaults to pretrained-utk-20, so a plain rerun resumes, and one after it finished only copies).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-pretrained-utk-20}"
# A finished run (it has its metrics.json) is not trained again: only the steps below run on it.
if [ ! -f "runs/$name/metrics.json" ]; then
    mtl train multitask --config experiments/configs/pretrained.json --data-dir ../shared/data --name "$name"
fi
mkdir -p mtl/pretrained experiments/results/pretrained
cp "runs/$name/model.keras" "runs/$name/config.json" "runs/$name/metrics.json" mtl/pretrained/
# The TFLite export that `mtl predict` answers with through LiteRT, made from the model just copied.
rm -f mtl/pretrained/model.tflite mtl/pretrained/model.tflite.json
mtl export --format tflite --output mtl/pretrained/model.tflite
cp "runs/$name/config.json" "runs/$name/metrics.json" "runs/$name/multitask_training.json" experiments/results/pretrained/
