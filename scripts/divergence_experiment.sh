#!/usr/bin/env bash
# Reproduces reports/training_divergence.md: vid_frame_r18_plateau without backbone_until diverges at iteration 2931
# and leaves its iteration-2750 checkpoint; two resumes of that checkpoint then log every iteration, one as trained,
# one with N_feat's rate at 1e-6 (its parameter groups kept, so the optimizer state still fits).
set -euo pipefail
base=runs/det/vid_frame_r18_plateau_unfixed
featflow train det --config vid_frame_r18_plateau --set train.backbone_until=null --out "$base" --quiet || true
python scripts/divergence_diagnostic.py run "$base" runs/divergence/as_trained 2830 vid_frame_r18_plateau \
    --set train.backbone_until=null
python scripts/divergence_diagnostic.py run "$base" runs/divergence/nfeat_fixed 2850 vid_frame_r18_plateau \
    --set train.backbone_until=null --set train.backbone_lr=0.000001
python scripts/divergence_diagnostic.py report reports "as trained=runs/divergence/as_trained" \
    "N_feat's rate 1e-6=runs/divergence/nfeat_fixed"
