#!/usr/bin/env bash
# One GPU session of issue 17, as run on a lent NVIDIA H200 (README, "Training on a GPU"):
# the CUDA tests, bench_augment, the full-size synthetic set generated there, bench_gpu's speed
# part on it, then its equal-in-result and stop-and-resume parts on the teaching set.
#
#   OUT=results-folder bash benchmarks/gpu_session.sh
#
# Needs python3 with torch/torchaudio (CUDA), numpy, scipy, pandas, soundfile, pooch, tqdm and
# pytest; cyclelib from this checkout. Every part writes its JSON into $OUT as it goes.
set -u
OUT=${OUT:-gpu-session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CYCLELIB_CACHE=${CYCLELIB_CACHE:-/tmp/cyclelib-cache}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
FULL=${FULL:-/tmp/icbhi-like}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchaudio; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__)"

timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_gpu_path.py 2>&1 | tail -4
# waveform effects of a batch: one call per effect (the GPU default) against one per cycle
timeout 120 python3 benchmarks/bench_augment.py --devices cuda --batches 64 128 2>&1 \
    | tee "$OUT/augment.log"

began=$(date +%s)
[ -d "$FULL" ] || timeout 150 python3 -m cyclelib.cli synth "$FULL" --like-icbhi
echo "synth --like-icbhi: $(( $(date +%s) - began )) s, $(du -sh "$FULL" | cut -f1)"

timeout ${SPEED_S:-300} python3 benchmarks/bench_gpu.py --data-dir "$FULL" --epochs 2 \
    --modes augmented cached --precisions fp32 bf16 --json-to "$OUT/speed.json" 2>&1 \
    | grep -v "^{" | tee "$OUT/speed.log"

timeout ${EQUAL_S:-240} python3 benchmarks/bench_gpu.py --equal-epochs ${EQUAL_EPOCHS:-80} \
    --resume-epochs ${RESUME_EPOCHS:-30} --seeds 0 1 2 --jobs 3 --precisions fp32 bf16 \
    --out /tmp/bench-gpu-runs --json-to "$OUT/equal.json" 2>&1 | grep -v "^{" | tee "$OUT/equal.log"
