#!/usr/bin/env bash
# Reproduces reports/detection_vid.md (the VID-geometry detection benchmark) on a CPU machine. On 2 cores with
# bfloat16 (AVX512-BF16) the training took 51 + 25 + 25 + 13 minutes (the single-frame base stops at its 50-minute
# time limit: 1051 of its 2500 iterations there; a faster machine runs more of them) and the evaluation of 90
# held-out videos about 25 more. N_feat starts from the shipped segmenter (seg-dff-r18-synth, the stand-in for
# ImageNet pre-training); no other run is needed first.
set -euo pipefail
featflow synth --format vid --geometry vid --out data/vid_geo_val --videos 0 --val-videos 120 --frames 30 \
    --size 224x384 --seed 1 --quiet
for cfg in vid_frame_r18 vid_fgfa_r18_inception vid_frame_r18_long vid_dff_r18_inception \
    vid_fgfa_r18_inception_temp vid_agg_r18_noflow; do
  featflow train det --config "$cfg" --quiet
done
featflow bench det --plan detection_vid --report reports --cache runs/det_cache --quiet
