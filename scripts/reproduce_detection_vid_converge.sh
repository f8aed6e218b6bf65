#!/usr/bin/env bash
# Reproduces reports/detection_vid_converge.md: the VID-geometry detection benchmark with the single-frame base run
# through its whole 2500-iteration schedule (29.8 minutes on 2 cores of an AMX / AVX512-BF16 Xeon in bfloat16), then
# single frame, FGFA and DFF 400 iterations each from it at lr 0.002 (one thread each, two side by side there:
# about 23 minutes for FGFA, 10 for DFF, 5 for single frame), and the evaluation of 90 held-out videos.
set -euo pipefail
featflow synth --format vid --geometry vid --out data/vid_geo_val --videos 0 --val-videos 120 --frames 30 \
    --size 224x384 --seed 1 --quiet
featflow train det --config vid_frame_r18 --quiet
for cfg in vid_fgfa_r18_inception_cont vid_dff_r18_inception_cont vid_frame_r18_cont; do
  featflow train det --config "$cfg" --quiet
done
featflow bench det --plan detection_vid_converge --report reports --cache runs/det_cache --quiet
