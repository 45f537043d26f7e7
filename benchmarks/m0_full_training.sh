#!/usr/bin/env bash
# EfficientNet-Lite0 ImageNet M0 (issue 22 item 4): each store's default aift-sim run, stopped once full training
# (3 seeds) has fixed target.json; the run folder stays resumable (`aift-sim --out DIR --resume` completes it).
# Run inside the venv: bash benchmarks/m0_full_training.sh  (STORES, RUNS: where stores and run folders go).
# Made docs/results/m0-comparison/<store>/ on 2026-12-05 (2-core AMD EPYC); then benchmarks/m0_comparison.py.
set -u
cd "$(dirname "$0")/.." && ROOT=$PWD
export TF_CPP_MIN_LOG_LEVEL=2
STORES=${STORES:-/tmp/mm}; RUNS=${RUNS:-/tmp/runs/m0}
mkdir -p "$STORES" "$RUNS"; cd "$STORES"
[ -f pe28.h5 ] || { python -m simulate.medmnist_layout --app pulmonary-embolism --out pe28.npz && aift-data import-npz pe28.npz --out pe28.h5 --patches 8; }
[ -f breastmnist.h5 ] || aift-data import-npz "$ROOT/../shared/data/breastmnist.npz" --out breastmnist.h5 --patches 8
for spec in "pulmonary-embolism:--app pulmonary-embolism" "breastmnist:--data $STORES/breastmnist.h5" \
            "colonoscopy-frames:--app colonoscopy-frames" "pe28-medmnist-layout:--data $STORES/pe28.h5" \
            "polyp-detection:--app polyp-detection"; do
  name=${spec%%:*}; args=${spec#*:}
  out=$RUNS/$name
  [ -f $out/target.json ] && continue
  echo "== $name start $(date -u +%H:%M:%S)"
  t0=$(date +%s)
  if [ -f $out/config.json ]; then
    setsid aift-sim --out $out --resume -q > $RUNS/$name.log 2>&1 &
  else
    setsid aift-sim $args --model efficientnet_lite0 --weights imagenet --out $out -q > $RUNS/$name.log 2>&1 &
  fi
  pid=$!
  while [ ! -f $out/target.json ] && kill -0 $pid 2>/dev/null; do sleep 5; done
  t1=$(date +%s)
  kill -- -$pid 2>/dev/null; sleep 2; kill -9 -- -$pid 2>/dev/null
  echo "== $name target after $((t1-t0)) s at $(date -u +%H:%M:%S)"; cat $out/target.json 2>/dev/null; echo
done
echo ALL_DONE
