#!/usr/bin/env bash
# On the GPU machine: the QAT step of both recipes (gelan-c 640, random weights, CUDA graph,
# our kernels) at batch 10 and 32, with the augmented loader at batch 10 — `seed` (layer
# distillation, the issue-13 targets) and `default` (task loss, learned ranges, weight average).
# Needs dist/{yolo-qat,make_shapes.py} and torch 2.11 (for libtorch). Prints one table last.
set -uo pipefail
OUT="${OUT:-runs/gpu_bench_recipes}"; mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
Y=dist/yolo-qat
D=/tmp/shapes/shapes.yaml
[ -f $D ] || python3 dist/make_shapes.py /tmp/shapes --train 2000 --val 100 --seed 1 > "$OUT/data.log" 2>&1 || { tail "$OUT/data.log"; exit 1; }
rows=()
bench() { # name, flags...
  local n=$1; shift
  timeout 150 $Y bench qat --cfg configs/gelan-c.yaml --imgsz 640 --iters 30 --warmup 5 --calib-batches 4 "$@" > "$OUT/$n.log" 2>&1
  rows+=("$n: $(tail -1 "$OUT/$n.log" | python3 -c 'import json,sys
try:
  r=json.loads(sys.stdin.read()); print("%s img/s %.1f loader %s step-peak %.2f GiB graph %s" % (r["objective"], r["images_per_s"], ("%.1f" % r["images_per_s_with_loader"]) if "images_per_s_with_loader" in r else "-", r["step_allocator_peak_gib"] or -1, r["cuda_graph"]))
except Exception as e: print("failed", e)')")
  echo "${rows[-1]}"
}
for r in seed default; do
  bench $r-b10 --recipe $r --batch-size 10 --data $D
  bench $r-b32 --recipe $r --batch-size 32
done
echo; echo "== summary"; printf '%s\n' "${rows[@]}"
