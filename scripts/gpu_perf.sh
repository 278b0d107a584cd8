#!/usr/bin/env bash
# On the GPU machine, one call: the fused kernels against their reference ops, the QAT
# step benchmark (gelan-c 640, random weights, reference recipe's objective) fused and
# unfused at batch 10 and 32 with the allocator's peak, batch 10 with all but 24 GiB of
# the card held by another process, and two short yolov9-t QAT runs fused vs unfused.
# Needs dist/{yolo-qat,gpu_kernels,make_shapes.py}, ../shared, torch 2.11 (for libtorch).
set -uo pipefail
OUT="${OUT:-runs/gpu_perf}"; mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
Y=dist/yolo-qat
D=/tmp/shapes/shapes.yaml
python3 dist/make_shapes.py /tmp/shapes --train 6000 --val 600 --seed 1 > "$OUT/data.log" 2>&1 || { tail "$OUT/data.log"; exit 1; }
rows=()
row() { rows+=("$1"); echo "$1"; }
dist/gpu_kernels --ignored --test-threads 1 > "$OUT/kernels.log" 2>&1; row "kernel check: rc=$? $(grep -E '^test result' "$OUT/kernels.log")"
bench() { # name, flags...
  local n=$1; shift
  timeout 150 $Y bench qat --cfg configs/gelan-c.yaml --imgsz 640 --iters 30 --warmup 5 --calib-batches 4 "$@" > "$OUT/$n.log" 2>&1
  row "$n: $(tail -1 "$OUT/$n.log" | python3 -c 'import json,sys
try:
  r=json.loads(sys.stdin.read()); print("img/s %.1f loader %s TFLOP/s %.1f alloc-peak %.2f GiB reserved %.2f GiB fused %s" % (r["images_per_s"], ("%.1f" % r["images_per_s_with_loader"]) if "images_per_s_with_loader" in r else "-", r["tflops"], r["allocator_peak_gib"] or -1, r["allocator_reserved_peak_gib"] or -1, r["fused_kernels"]))
except Exception as e: print("failed", e)')"
}
bench b10-fused --batch-size 10 --data $D
bench b10-unfused --batch-size 10 --unfused
bench b32-fused --batch-size 32 --data $D
bench b32-unfused --batch-size 32 --unfused
bench b10-cl-fused --batch-size 10 --channels-last
bench b32-cl-fused --batch-size 32 --channels-last
# A 24 GiB card: another process holds the rest of the H200 while batch 10 runs.
python3 scripts/gpu_hold_memory.py 24 170 > "$OUT/hog.log" 2>&1 &
hog=$!; sleep 12; row "hog: $(cat "$OUT/hog.log")"
bench b10-24GiB --batch-size 10
kill $hog 2>/dev/null; wait $hog 2>/dev/null
# Same accuracy fused and unfused: two short reference-recipe runs side by side.
WEIGHTS=../shared/fixtures/yolov9-t-shapes-converted.pt DEADLINE=250 OUT=$OUT/sweep bash scripts/gpu_sweep.sh \
  fused@384=--recipe,seed,--epochs,3 unfused@384=--recipe,seed,--epochs,3,--no-fused-kernels > "$OUT/sweep.log" 2>&1
echo; echo "== summary"; printf '%s\n' "${rows[@]}"; tail -6 "$OUT/sweep.log"
