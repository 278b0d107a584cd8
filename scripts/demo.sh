#!/usr/bin/env bash
# The built-in demo: the trained yolov9-t "shapes" model and a 48-image data set
# shipped in assets/demo. Runs on the CPU in a few minutes; uses the GPU if asked
# (DEVICE=cuda:0 scripts/demo.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -x "$here/dist/yolo-qat" ] || "$here/scripts/setup.sh"
cd "$here"
Y=dist/yolo-qat
W=assets/demo/yolov9-t-shapes-converted.pt
DATA=assets/demo/shapes-mini/shapes.yaml
DEVICE="${DEVICE:-cpu}"
$Y info --weights "$W" --imgsz 320
$Y forward --weights "$W" --input assets/demo/input.safetensors --output runs/demo/forward.safetensors --device "$DEVICE"
