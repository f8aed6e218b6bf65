#!/usr/bin/env bash
# Reproduces reports/training_stability.md: 150-iteration runs of the per-frame detector (192x384 shapes data, N_feat
# from the shipped segmenter and trained) and 100-iteration DFF runs (from the shipped DFF detector), one optimizer /
# normalisation / learning-rate / precision setting each, evaluated every 15-20 iterations. About 40 minutes on 2 cores.
set -euo pipefail
for cfg in scripts/stability/*.yaml; do
  name=$(basename "$cfg" .yaml)
  # h_sgd004_frozen_bf16 diverges; the trainer now stops such a run (so it leaves no metrics.json and no row)
  featflow train det --config "$cfg" --out "runs/stability/$name" --quiet || echo "$name stopped"
done
python scripts/stability_report.py runs/stability reports
