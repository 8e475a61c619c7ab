#!/usr/bin/env bash
# Compare every approach on the full data (../shared/data) with one backbone and budget, over the config's seeds.
#   experiments/compare.sh                       # resnet, augmentation on, every network sees the same faces of each task
#   experiments/compare.sh compare_full          # the same at equal epochs (the two-head model sees 1.5x the emotion faces)
#   experiments/compare.sh notebook_full         # the notebook's LeNet and settings
# Results: runs/<name>/results.md, and `tensorboard --logdir runs/<name>`.
set -euo pipefail
config="${1:-compare_equal_examples}"
cd "$(dirname "$0")/.."
exec mtl compare --config "experiments/configs/${config}.json" --name "${config}-$(date +%Y%m%d-%H%M%S)"
