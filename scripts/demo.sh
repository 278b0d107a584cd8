#!/usr/bin/env bash
# The built-in demo: the trained yolov9-t "shapes" model and a 48-image data set
# shipped in assets/demo. info → eval → quantize (PTQ + a short QAT) → Q/DQ ONNX
# export → eval of the ONNX with ONNX Runtime. A few minutes on the CPU; on a GPU
# machine run `DEVICE=cuda:0 scripts/demo.sh`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -x "$here/dist/yolo-qat" ] || "$here/scripts/setup.sh"
cd "$here"
Y=dist/yolo-qat
W=assets/demo/yolov9-t-shapes-converted.pt
DATA=assets/demo/shapes-mini/shapes.yaml
DEVICE="${DEVICE:-cpu}"
OUTDIR=runs/demo
$Y info --weights "$W" --imgsz 320
$Y forward --weights "$W" --input assets/demo/input.safetensors --output "$OUTDIR/forward.safetensors" --device "$DEVICE"
$Y eval --weights "$W" --data "$DATA" --imgsz 320 --batch-size 16 --device "$DEVICE" --project "$OUTDIR" --name eval --exist-ok
# Demo-sized QAT: the reference recipe's defaults are --iters 200 --epochs 10 --calib-batches 26.
$Y quantize --weights "$W" --data "$DATA" --imgsz 320 --batch-size 8 --device "$DEVICE" \
  --iters 4 --epochs 2 --calib-batches 4 --project "$OUTDIR" --name quantize --exist-ok
Q="$OUTDIR/quantize/weights/qat_best_yolov9-t-shapes-converted.safetensors"
$Y export --weights "$Q" --imgsz 320 --dynamic
$Y eval --weights "${Q%.safetensors}.onnx" --data "$DATA" --imgsz 320 --batch-size 16 --device cpu --project "$OUTDIR" --name eval_onnx --exist-ok
echo "demo done: results in $OUTDIR"
