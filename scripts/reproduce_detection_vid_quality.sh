#!/usr/bin/env bash
# Reproduces reports/detection_vid_quality.md: detection_vid_weighting's single-frame and quality-aware rows trained
# again, each 400 iterations at lr 0.002 from the shipped single-frame detector det-frame-r18-vid (4400 iterations
# of 8), so both chains sum to 4800 iterations of 8. The two runs go side by side, one thread each.
# The held-out videos are seed 1; training draws seed 0.
set -euo pipefail
if [ ! -d data/vid_geo_val ]; then
  featflow synth --format vid --geometry vid --out data/vid_geo_val --videos 0 --val-videos 120 --frames 30 \
      --size 224x384 --seed 1 --quiet
fi
featflow --threads 1 train det --config vid_frame_r18_plateau_cont --init det-frame-r18-vid \
    --out runs/det/quality/frame --quiet &
frame=$!
featflow --threads 1 train det --config vid_fgfa_r18_inception_quality_plateau_cont --init det-frame-r18-vid \
    --out runs/det/quality/fgfa --quiet &
fgfa=$!
wait "$frame" && wait "$fgfa"  # each run's own exit status: a failed run stops the script
featflow --threads 2 bench det --plan detection_vid_quality --report reports --cache runs/det_cache --quiet
