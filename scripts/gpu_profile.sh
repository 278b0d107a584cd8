#!/usr/bin/env bash
# On the GPU machine: where the QAT step's GPU time goes. Runs `bench qat --profile` for
# each NAME=FLAGS argument (gelan-c 640, random weights, comma-separated extra flags) and
# prints per run: img/s, GPU ms per step, the share per kernel family and the costliest
# kernels (ms and launches per step). Needs dist/yolo-qat and torch 2.11 (for libtorch).
# Example: scripts/gpu_profile.sh b10=--batch-size,10 b32=--batch-size,32
set -uo pipefail
OUT="${OUT:-runs/gpu_profile}"; mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
TOP="${TOP:-25}"
for spec in "$@"; do
  n="${spec%%=*}"; IFS=, read -r -a flags <<< "${spec#*=}"
  timeout 200 dist/yolo-qat bench qat --cfg configs/gelan-c.yaml --imgsz 640 --iters 20 --warmup 3 --calib-batches 2 --profile 3 "${flags[@]}" > "$OUT/$n.log" 2>&1
  tail -1 "$OUT/$n.log" | TOP=$TOP NAME=$n python3 -c '
import json, os, sys
try:
    r = json.loads(sys.stdin.read())
except Exception as e:
    print(os.environ["NAME"], "failed", e); sys.exit()
p = r["profile"]
print("== %s: %.1f img/s, %.1f GPU ms/step, %d kernels/step, step peak %.2f GiB" % (os.environ["NAME"], r["images_per_s"], p["gpu_ms_per_step"], p["kernels_per_step"], r["step_allocator_peak_gib"] or -1))
print("   " + ", ".join("%s %.1f%%" % (k, 100 * v) for k, v in sorted(p["share"].items(), key=lambda kv: -kv[1])))
for name, ms, n in p["top_kernels_ms_launches_per_step"][: int(os.environ["TOP"])]:
    print("   %6.2f ms %5.0f x  %s" % (ms, n, name[:130]))
'
done
