#!/usr/bin/env bash
# Reproduces reports/segmentation.md from scratch on a CPU machine (several hours on 2 cores).
# Flow pre-training (reports/flow.md) must have run first for the FlowNet and FlowNet Half variants:
#   featflow train flow --config flownet_half; featflow train flow --config flownet
set -euo pipefail
featflow synth --format cityscapes --out data/cityscapes_synth_val --videos 0 --val-videos 60 --size 128x256 --seed 1 --quiet
for cfg in frame_r18 frame_r18_long frame_r34 dff_r18_inception dff_r18_inception_long dff_r18_inception_fix_n dff_r18_inception_fix_f \
           dff_r18_half dff_r18_flownet dff_r34_inception dff_r34_half dff_r34_flownet; do
  featflow train seg --config "$cfg" --quiet
done
featflow bench seg --plan segmentation --report reports
