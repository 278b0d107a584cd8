#!/usr/bin/env bash
# Makes the project venv (torch 2.11.0 = libtorch for tch 0.24, onnxruntime for
# export checks) and builds the release binary with CUDA linked in.
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
# shellcheck source=env.sh
source "$here/scripts/env.sh"
cd "$here"
cargo build --release --locked
mkdir -p dist
cp "$CARGO_TARGET_DIR/release/yolo-qat" dist/yolo-qat
echo "setup: built dist/yolo-qat (libtorch from $LIBTORCH)"
