#!/usr/bin/env bash
# Reproduces reports/segmentation_budget.md (Frame against DFF at the same total budget) on a CPU machine: the
# held-out snippets of reports/segmentation.md, one per-frame run for DFF's 39720 samples (4965 iterations of 8:
# 0.75 s per iteration alone on 2 cores, about an hour), DFF's own chain of the same budget (3/4 per frame, 1/4 on
# pairs), and the shipped DFF segmenter (seg-dff-r18-synth, the DFF row of
# reports/segmentation.md; its chain's budget is read from that report's records).
set -euo pipefail
featflow synth --format cityscapes --out data/cityscapes_synth_val --videos 0 --val-videos 60 --size 128x256 \
    --seed 1 --quiet
featflow train seg --config frame_r18_budget --quiet
featflow train seg --config frame_r18_3q --quiet  # DFF's chain: 3/4 of the budget per frame (about 47 minutes),
featflow train seg --config dff_r18_inception_budget --quiet  # then 1/4 on pairs (about 20 minutes)
featflow bench seg --plan segmentation_budget --quiet
