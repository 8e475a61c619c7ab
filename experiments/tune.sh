#!/usr/bin/env bash
# Hyperband searches on the full data (../shared/data), each sized to finish within about 45 minutes
# on this 2-core machine; the best trial lands in runs/tune-<approach>/best_config.json.
#
#   experiments/tune.sh multitask    # max 4 epochs, factor 3: 10 trials, 26 epochs (~30 min + ~5 min teachers)
#   experiments/tune.sh separate     # max 3 epochs, factor 2:  8 trials, 17 epochs (~30 min)
#
# Sizing: an epoch is ~28.6k images; LeNet trains ~900 img/s and resnet ~450 img/s, so with half
# the trials on each backbone a multitask epoch takes ~1 min with validation and augmentation. The
# separate search trains both networks on every batch (each learns from its own labels only), so
# its epochs cost about twice as much; it gets fewer of them.
#
# Options after the approach go to `mtl tune`, e.g. --tuner bayesian --max-trials 12, --overwrite.
# TEACHERS=RUN_DIR (a finished separate run) cross-labels with those models instead of training teachers.
# Interrupted? Run the same command again: finished trials are kept, the one in flight reruns.
#
# One search over several machines (same code, data and command everywhere; start the chief first):
#   chief   (10.0.0.1): experiments/tune.sh multitask --chief --oracle-ip 10.0.0.1 --oracle-port 8000
#   workers           : experiments/tune.sh multitask --worker w1 --oracle-ip 10.0.0.1 --oracle-port 8000
#                       experiments/tune.sh multitask --worker w2 --oracle-ip 10.0.0.1 --oracle-port 8000
# With pseudo-labels every worker needs the same teachers: TEACHERS=runs/<separate run> on each.
# A worker that dies mid-trial holds up the chief: start it again with the same ID to finish the trial.
#
# Then train the winner: mtl train multitask --config runs/tune-multitask/best_config.json
set -euo pipefail
approach="${1:?usage: experiments/tune.sh separate|multitask [mtl tune options]}"
shift
cd "$(dirname "$0")/.."
teachers=()
if [ -n "${TEACHERS:-}" ]; then
  teachers=(--set "options.teachers=${TEACHERS}")
fi
exec mtl tune "${approach}" --config "experiments/configs/tune_${approach}.json" --data-dir ../shared/data "${teachers[@]}" "$@"
