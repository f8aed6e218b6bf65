#!/usr/bin/env bash
# Reproduces reports/detection_vid.md (the VID-geometry detection benchmark) on a CPU machine. On 2 cores with
# bfloat16 (AVX512-BF16) the single-frame base stops at its 50-minute time limit (1051 of its 2500 iterations there;
# a faster machine runs more of them); each further row is 400 iterations: 10-45 minutes each there (single frame
# 25, DFF 10, FGFA 25, without flow 31, FGFA + learned temperature 45; the last two slowed by other work beside
# them), and the evaluation of 90 held-out videos about 45 more (--cache keeps each row's detections, so a re-run
# evaluates only new rows). N_feat starts from the shipped segmenter (seg-dff-r18-synth, the stand-in for ImageNet
# pre-training); no other run is needed first.
set -euo pipefail
featflow synth --format vid --geometry vid --out data/vid_geo_val --videos 0 --val-videos 120 --frames 30 \
    --size 224x384 --seed 1 --quiet
for cfg in vid_frame_r18 vid_fgfa_r18_inception vid_frame_r18_long vid_dff_r18_inception \
    vid_fgfa_r18_inception_temp vid_agg_r18_noflow vid_agg_r18_noflow_mean vid_fgfa_r18_inception_fix_f; do
  featflow train det --config "$cfg" --quiet
done
featflow bench det --plan detection_vid --report reports --cache runs/det_cache --quiet
