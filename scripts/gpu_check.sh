#!/usr/bin/env bash
# GPU check: the speed benchmark on a CUDA device (its table), then torchrun/NCCL training and translation
# (scripts/ddp_check.py); about 3-5 minutes.
# Installs nothing beyond the project itself (into the current Python, without touching torch),
# so run it where torch with CUDA is already installed:  bash scripts/gpu_check.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${1:-gpu_bench.json}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
"$PY" -c "import i2i" 2>/dev/null || "$PY" -m pip install --quiet --no-deps -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== eager, bf16/fp16/fp32, channels_last =="
"$PY" scripts/bench.py --device cuda --channels-last --steps 20 --warmup 3 --out "${out%.json}_eager.json"
echo "== torch.compile, channels_last =="
"$PY" scripts/bench.py --device cuda --channels-last --compile --precisions bf16 --steps 20 --warmup 5 \
    --out "${out%.json}_compiled.json"
echo "== several processes: torchrun, NCCL, SyncBatchNorm (1 process; 2 when the machine has 2 GPUs) =="
"$PY" scripts/ddp_check.py --device cuda
