#!/usr/bin/env bash
# Makes the project venv (torch 2.11.0 = libtorch for tch 0.24, onnxruntime for
# export checks, nvcc for the CUDA kernels) and builds the release binary with CUDA
# linked in.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
home="${YOLO_QAT_HOME:-$HOME/.cache/yolo-qat}"
venv="$home/venv"
mkdir -p "$home"
if ! "$venv/bin/python" -c 'import torch, onnxruntime, onnx' 2>/dev/null; then
  echo "setup: creating $venv (torch==2.11.0, onnx, onnxruntime; a few GB on first run)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q torch==2.11.0 numpy pillow scikit-image onnx onnxruntime safetensors
fi
# nvcc for CUDA 13.0 (the torch wheel's CUDA) from PyPI: build.rs compiles the fused
# kernels of src/native/*.cu with it; without it the build falls back to ATen's ops.
nvcc_pkgs="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85"
if ! ls "$venv"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
  echo "setup: installing nvcc (CUDA 13.0) into $venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $nvcc_pkgs || echo "setup: nvcc not installed; building without the fused CUDA kernels"
fi
# shellcheck source=env.sh
source "$here/scripts/env.sh"
cd "$here"
cargo build --release --locked
mkdir -p dist
cp "$CARGO_TARGET_DIR/release/yolo-qat" dist/yolo-qat
echo "setup: built dist/yolo-qat (libtorch from $LIBTORCH)"
