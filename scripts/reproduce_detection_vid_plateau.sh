#!/usr/bin/env bash
# Reproduces reports/detection_vid_plateau.md: the VID-geometry detection benchmark with the single-frame base run
# through a 4000-iteration schedule at lr 0.012 (vid_frame_r18: 2500 at 0.02), N_feat fixed after the first half,
# then single frame, FGFA, DFF and FGFA's three ablations 400 iterations each from it at lr 0.002, and the
# evaluation of 90 held-out videos.
set -euo pipefail
featflow synth --format vid --geometry vid --out data/vid_geo_val --videos 0 --val-videos 120 --frames 30 \
    --size 224x384 --seed 1 --quiet
featflow train det --config vid_frame_r18_plateau --quiet
for cfg in vid_fgfa_r18_inception_plateau_cont vid_dff_r18_inception_plateau_cont vid_frame_r18_plateau_cont \
    vid_agg_r18_noflow_mean_plateau_cont vid_agg_r18_noflow_plateau_cont vid_fgfa_r18_inception_fix_f_plateau_cont; do
  featflow train det --config "$cfg" --quiet
done
featflow bench det --plan detection_vid_plateau --report reports --cache runs/det_cache --quiet
