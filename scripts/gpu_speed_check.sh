#!/usr/bin/env bash
# On the GPU machine, issue 13's speed figures in one call: the kernel check (if
# dist/gpu_kernels is there), the QAT step of gelan-c at 640 for both recipes at batch 10 and
# 32 (profiled), the same fed by the augmented loader (with and without `--cache`), and the
# loader alone. Prints one table last. Needs dist/{yolo-qat,make_shapes.py}, torch 2.11.
set -uo pipefail
OUT="${OUT:-runs/gpu_speed_check}"; L="$OUT/log"; mkdir -p "$L"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
# Its own data folder: gpu_sweep.sh makes a larger set under /tmp/shapes and reuses one it finds.
D=/tmp/shapes-speed/shapes.yaml
[ -f "$D" ] || (python3 dist/make_shapes.py /tmp/shapes-speed --train 2000 --val 50 --seed 1 > "$L/shapes.log" 2>&1) &
if [ -x dist/gpu_kernels ]; then
  dist/gpu_kernels --ignored --test-threads 1 > "$L/kernels.log" 2>&1; echo "kernel check rc=$? $(grep 'test result' "$L/kernels.log")" > "$L/kernels.txt"
fi
wait
B="dist/yolo-qat bench qat --cfg configs/gelan-c.yaml --imgsz 640 --warmup 3 --calib-batches 2"
TOP=12 OUT="$OUT/prof" scripts/gpu_profile.sh seed-b10=--batch-size,10 seed-b32=--batch-size,32 default-b10=--batch-size,10,--recipe,default default-b32=--batch-size,32,--recipe,default > "$L/prof.txt" 2>&1
timeout 100 $B --iters 60 --data $D > "$L/seed-b10-loader.json" 2>&1
timeout 120 $B --iters 60 --data $D --cache > "$L/seed-b10-loader-cache.json" 2>&1
timeout 120 $B --iters 60 --data $D --cache --recipe default > "$L/default-b10-loader-cache.json" 2>&1
timeout 120 $B --iters 30 --data $D --cache --batch-size 32 > "$L/seed-b32-loader-cache.json" 2>&1
timeout 60 dist/yolo-qat bench loader --data $D --imgsz 640 --batch-size 10 --iters 30 --warmup 3 > "$L/loader.json" 2>&1
timeout 90 dist/yolo-qat bench loader --data $D --imgsz 640 --batch-size 10 --iters 30 --warmup 3 --cache > "$L/loader-cache.json" 2>&1
cat "$L/kernels.txt" 2>/dev/null
grep "^==" "$L/prof.txt"
python3 - "$L" <<'PY'
import json, sys, os
L = sys.argv[1]
def last(name):
    try:
        return json.loads(open(os.path.join(L, name)).read().strip().splitlines()[-1])
    except Exception as e:
        return {"error": str(e)}
print("| run | step img/s | with loader img/s | loader wait / upload / launch ms per batch |")
for n in ["seed-b10-loader", "seed-b10-loader-cache", "default-b10-loader-cache", "seed-b32-loader-cache"]:
    r = last(n + ".json"); w = r.get("with_loader", {})
    print("| %s | %s | %s | %s |" % (n, round(r.get("images_per_s", 0), 1), round(r.get("images_per_s_with_loader", 0), 1),
          " / ".join("%.1f" % w.get(k, -1) for k in ("wait_ms", "upload_ms", "step_call_ms")) if w else r.get("error", "")))
for n in ["loader", "loader-cache"]:
    r = last(n + ".json"); print("| %s alone | – | %s | %s workers |" % (n, round(r.get("images_per_s", 0), 1), r.get("workers")))
PY
