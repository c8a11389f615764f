#!/usr/bin/env bash
# The one-call GPU check (scripts/gpu_check.py): benchmark, whole-process train/translate runs with their timing
# breakdown, a torchrun NCCL run and the `gpu` tests, in one table (about 5-8 minutes on one H200).
#   bash scripts/gpu_check.sh [--data DATA] [--out OUT]
# A bare GPU machine whose Python has torch but not i2i's other dependencies (albumentations, pydantic...)
# gets them from wheels carried in .whl/ (made with scripts/offline_wheels.sh), installed into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import albumentations" 2>/dev/null; then
    [ -d .whl ] || { echo "albumentations missing and no .whl/ folder: see scripts/offline_wheels.sh" >&2; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" scripts/gpu_check.py "$@"
