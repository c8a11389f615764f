#!/usr/bin/env bash
# Download the wheels an offline machine needs to run i2i beside a torch it already has (GPU nodes often have no
# network): albumentations and what they pull in that such images usually lack. Carry DIR there and
# install with `pip install --no-index --no-deps DIR/*.whl` (scripts/gpu_check.sh does this from .whl/).
#   bash scripts/offline_wheels.sh [PYTHON_VERSION] [DIR]          # defaults: 3.12 .whl
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
dir=${2:-.whl}
mkdir -p "$dir"
packages=(albumentations albucore pydantic pydantic-core annotated-types typing-inspection
          stringzilla simsimd)
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 \
           manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
    platforms+=(--platform "$tag")
done
for name in "${packages[@]}"; do
    pip download --quiet --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
        "${platforms[@]}" -d "$dir" "$name"
done
ls "$dir"
