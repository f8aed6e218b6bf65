#!/usr/bin/env bash
# Reproduces reports/detection_vid_weighting.md: FGFA's weighting and training on the VID-geometry benchmark.
# Every row continues the shipped single-frame detector det-frame-r18-vid (vid_frame_r18_plateau, then
# vid_frame_r18_plateau_cont: 4400 iterations of 8) for 400 more iterations at lr 0.002 with its own config, so
# every chain sums to 4800 iterations of 8. The held-out videos are seed 1; training draws seed 0.
set -euo pipefail
threads=${FEATFLOW_THREADS:-2}
if [ ! -d data/vid_geo_val ]; then
  featflow synth --format vid --geometry vid --out data/vid_geo_val --videos 0 --val-videos 120 --frames 30 \
      --size 224x384 --seed 1 --quiet
fi
train() {  # CONFIG OUT: 400 iterations of CONFIG from the shipped single-frame detector
  featflow --threads "$threads" train det --config "$1" --init det-frame-r18-vid --out "runs/det/weighting/$2" --quiet
}
train vid_fgfa_r18_inception_quality_plateau_cont quality
train vid_fgfa_r18_inception_plateau_cont fgfa
train vid_frame_r18_plateau_cont frame
train vid_fgfa_r18_inception_current_plateau_cont current
featflow --threads "$threads" bench det --plan detection_vid_weighting --report reports --cache runs/det_cache --quiet
