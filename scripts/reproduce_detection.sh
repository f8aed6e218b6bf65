#!/usr/bin/env bash
# Reproduces reports/detection.md on a CPU machine (about 2.5 hours on 2 cores). frame_r18 starts its N_feat from
# the per-frame segmenter runs/seg/frame_r18_long and fgfa_r18_flownet its F from runs/flow/flownet (both made by
# scripts/reproduce_segmentation.sh).
set -euo pipefail
featflow synth --format vid --out data/vid_synth_val --videos 0 --val-videos 30 --size 192x384 --seed 1 --quiet
for cfg in frame_r18 frame_r18_long dff_r18_inception agg_r18_noflow_mean agg_r18_noflow fgfa_r18_inception fgfa_r18_inception_fix_f \
           fgfa_r18_flownet; do
  featflow train det --config "$cfg" --quiet
done
featflow bench det --plan detection --report reports
python benchmarks/exact_flow_diagnostic.py --data data/vid_synth_val --videos 12 --frame runs/det/frame_r18_long/model.safetensors --dff runs/det/dff_r18_inception/model.safetensors --fgfa runs/det/fgfa_r18_inception/model.safetensors
