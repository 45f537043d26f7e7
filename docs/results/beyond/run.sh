#!/usr/bin/env bash
# The measured comparison of issue 13 (docs/results/beyond/README.md). Per simulated app, two aift-sim runs
# with the same paired seeds: the offline M0 (aift, random and the reviewer's baselines) and the
# self-supervised M0 pre-trained on the app's own pool (aift, random). Run from the repository root:
#   bash docs/results/beyond/run.sh [RUNS_DIR]        (SEEDS=N to change the 10 paired seeds)
# A run folder that already exists is continued (aift-sim --resume).
set -euo pipefail
RUNS=${1:-runs/beyond}
SEEDS=${SEEDS:-10}
mkdir -p "$RUNS"
sim() {  # sim OUT ARGS...: a new run, or --resume of an interrupted one
  local out=$1; shift
  if [ -f "$out/config.json" ]; then aift-sim --out "$out" --resume -q; else aift-sim "$@" -q --out "$out"; fi
}
for app in pulmonary-embolism colonoscopy-frames polyp-detection; do
  sim "$RUNS/$app-offline" --app "$app" --seeds "$SEEDS" --strategies aift,random,bald@10,coreset,aift+coreset \
    --stop kappa:0.99:3 --no-export
  sim "$RUNS/$app-ssl" --app "$app" --seeds "$SEEDS" --strategies aift,random --m0 self-supervised \
    --stop kappa:0.99:3 --no-export
done
