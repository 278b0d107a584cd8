#!/usr/bin/env bash
# On the GPU machine, issue 13's accuracy and memory checks in one call: the reference recipe
# (10 × 200 at 384, yolov9-t-shapes) and two epochs of the default recipe, each with and without
# our kernels, side by side; then `bench qat` at batch 10 with all but 24 GiB of the card held
# by another process. Needs dist/{yolo-qat,make_shapes.py} and torch 2.11 (for libtorch).
set -uo pipefail
OUT="${OUT:-runs/gpu_accuracy_speed}"; mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
DEADLINE=${DEADLINE:-420} OUT=$OUT/sweep bash scripts/gpu_sweep.sh \
  seed-on@384=--recipe,seed seed-off@384=--recipe,seed,--no-fused-kernels \
  default2-on@384=--epochs,2 default2-off@384=--epochs,2,--no-fused-kernels > "$OUT/sweep.log" 2>&1
# A 24 GiB card: another process holds the rest of the H200 while batch 10 runs.
python3 scripts/gpu_hold_memory.py 24 100 > "$OUT/hog.log" 2>&1 &
hog=$!; sleep 12
timeout 80 dist/yolo-qat bench qat --cfg configs/gelan-c.yaml --imgsz 640 --iters 20 --warmup 3 --calib-batches 2 --batch-size 10 > "$OUT/b10-24GiB.log" 2>&1
kill $hog 2>/dev/null; wait $hog 2>/dev/null
echo "== 24 GiB card: $(cat "$OUT/hog.log")"
tail -1 "$OUT/b10-24GiB.log" | python3 -c 'import json,sys
try:
  r=json.loads(sys.stdin.read()); print("b10 with 24 GiB free: %.1f img/s, allocator peak %.2f GiB (steady step %.2f GiB)" % (r["images_per_s"], r["allocator_peak_gib"], r["step_allocator_peak_gib"]))
except Exception as e: print("failed", e)'
echo "== accuracy"; tail -8 "$OUT/sweep.log"
