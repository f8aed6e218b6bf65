#!/usr/bin/env bash
# One call on a machine with a GPU (the library's device tool runs it in a copy of the working tree), planned to
# take under 8 minutes: the paper-size speed table in fp32 and bf16, training throughput at the papers' sizes, and
# the shipped models' held-out accuracy on the GPU against the CPU figures. Writes reports/gpu.{md,json} and
# reports/precision_gpu.{md,json} (copy them back under $OUT when the device tool runs it).
#   bash benchmarks/gpu.sh            # on the GPU
#   bash benchmarks/gpu.sh --tiny     # a dry run at toy sizes on the CPU (what the test runs), written to
#                                     # $TMPDIR/featflow_gpu_dry_run
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import featflow" 2>/dev/null || pip install -q -e . --no-deps
device=cuda
extra=()
for arg in "$@"; do  # a dry run writes its toy figures outside reports/
  if [ "$arg" = "--tiny" ]; then device=cpu; extra=(--report "${TMPDIR:-/tmp}/featflow_gpu_dry_run"); fi
done
if [ "$device" = cuda ]; then  # the held-out sets of reports/precision.md (seconds to write on 16 cores)
  [ -d data/cityscapes_synth_val ] || featflow synth --format cityscapes --out data/cityscapes_synth_val \
    --videos 0 --val-videos 60 --size 128x256 --seed 1 --quiet
  [ -d data/vid_synth_val ] || featflow synth --format vid --out data/vid_synth_val --videos 0 --val-videos 30 \
    --size 192x384 --seed 1 --quiet
fi
python -m benchmarks.gpu_check --device "$device" "${extra[@]}" "$@"
