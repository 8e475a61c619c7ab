#!/usr/bin/env bash
# Hyperband searches on the full data (../shared/data), max 3 epochs, factor 3: 6 trials, 11 epochs.
# The best trial lands in runs/tune-<approach>/best_config.json.
#
#   experiments/tune.sh multitask    # measured: 15 min on 2 cores, with teachers given (TEACHERS=...)
#   experiments/tune.sh crosslabel
#   experiments/tune.sh separate     # trains both networks on every batch: about twice the time
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
approach="${1:?usage: experiments/tune.sh separate|crosslabel|multitask [mtl tune options]}"
shift
cd "$(dirname "$0")/.."
teachers=()
if [ -n "${TEACHERS:-}" ]; then
  teachers=(--set "options.teachers=${TEACHERS}")
fi
exec mtl tune "${approach}" --config "experiments/configs/tune_${approach}.json" --data-dir ../shared/data "${teachers[@]}" "$@"
