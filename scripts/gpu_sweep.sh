#!/usr/bin/env bash
# Several `quantize` runs side by side on one GPU (a small model leaves most of an
# H200 idle), then one table: Origin / PTQ / QAT-Best per run, epochs, wall time.
#   scripts/gpu_sweep.sh NAME@IMGSZ=FLAG,FLAG ... (commas become spaces)
#   e.g. scripts/gpu_sweep.sh seed@384=--recipe,seed default@384= big@640=--lr,3e-5
# Needs dist/yolo-qat, dist/make_shapes.py and a torch 2.11 install (for libtorch).
# A NAME starting with `dep-` is also exported (dynamic Q/DQ ONNX), checked against
# TensorRT's rules and evaluated through ONNX Runtime on the CPU after its run.
# Env: WORKERS (loader threads per run, 3), DEADLINE (seconds before the table is
# printed and unfinished runs are stopped, 540).
set -uo pipefail
OUT="${OUT:-runs/gpu_sweep}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
Y=dist/yolo-qat
W=${WEIGHTS:-assets/demo/yolov9-t-shapes-converted.pt}
D=/tmp/shapes/shapes.yaml
t0=$EPOCHREALTIME
if [ ! -f $D ]; then
  python3 dist/make_shapes.py /tmp/shapes --train 6000 --val 600 --seed 1 > "$OUT/data.log" 2>&1 || { tail "$OUT/data.log"; exit 1; }
fi
echo "data ready after $(python3 -c "print(round($EPOCHREALTIME - $t0))") s"
pids=()
names=()
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$(python3 -c 'import onnxruntime,os;print(os.path.dirname(onnxruntime.__file__))')"/capi/libonnxruntime.so* | head -1)}"
# Export the run's QAT-Best, check it, and evaluate it with ONNX Runtime (CPU) and the
# fake-quant model in fp32, so that the two APs compare like for like.
deploy() {
  local n=$1 s=$2 q=/tmp/q/$1/weights/qat_best_$(basename ${W%.*}).safetensors
  $Y export --weights $q --dynamic --imgsz $s --output /tmp/$n.onnx > /tmp/q_${n}_deploy.log 2>&1
  $Y export --check /tmp/$n.onnx >> /tmp/q_${n}_deploy.log 2>&1
  $Y eval --weights $q --data $D --imgsz $s --batch-size 32 --device cuda:0 --fp32 --project /tmp/ev --name fq$n --exist-ok >> /tmp/q_${n}_deploy.log 2>&1
  $Y eval --weights /tmp/$n.onnx --data $D --imgsz $s --batch-size 32 --device cpu --project /tmp/ev --name ort$n --exist-ok >> /tmp/q_${n}_deploy.log 2>&1
}
for spec in "$@"; do
  head=${spec%%=*}; flags=${spec#*=}; name=${head%@*}; s=${head#*@}
  names+=("$name")
  ( st=$EPOCHREALTIME
    $Y quantize --weights $W --data $D --imgsz $s --device cuda:0 --workers ${WORKERS:-3} ${flags//,/ } \
      --project /tmp/q --name $name --exist-ok > "/tmp/q_$name.log" 2>&1
    echo "rc=$? wall=$(python3 -c "print(round($EPOCHREALTIME - $st))")" >> "/tmp/q_$name.log"
    [[ $name == dep-* ]] && deploy $name $s ) &
  pids+=($!)
done
deadline=$(( $(date +%s) + ${DEADLINE:-540} ))
while [ $(date +%s) -lt $deadline ] && kill -0 "${pids[@]}" 2>/dev/null; do sleep 5; done
for p in "${pids[@]}"; do kill -- -$p 2>/dev/null; pkill -P $p 2>/dev/null; done
echo
for n in "${names[@]}"; do
  echo "== $n: $(grep -E '^rc=|error' /tmp/q_$n.log | tail -2 | tr '\n' ' ')"
  grep -E "^QAT \(|accuracy target|keeping" /tmp/q_$n.log | head -5
  cp /tmp/q/$n/report.json "$OUT/report_$n.json" 2>/dev/null
  if [ -f /tmp/q_${n}_deploy.log ]; then
    grep -E "TensorRT check|convs:|error|all " /tmp/q_${n}_deploy.log | head -8
    cp /tmp/q_${n}_deploy.log "$OUT/deploy_$n.log"
  fi
  python3 - "$n" <<'EOF'
import json, sys
n = sys.argv[1]
try:
    d = json.load(open(f"/tmp/q/{n}/report.json"))
except Exception as e:
    print(f"  no report ({e})"); sys.exit()
rows = {r["name"]: r for r in d["rows"]}
qat = [r for r in d["rows"] if r["name"].startswith("QAT-") and r["name"] != "QAT-Best"]
fmt = lambda r: f"{r['map']:.4f}/{r['map50']:.4f}" if r else "-"
print(f"  Origin {fmt(rows.get('Origin'))}  PTQ {fmt(rows.get('PTQ'))}  QAT-Best {fmt(rows.get('QAT-Best'))}  epochs {len(qat)}  wall {d['run'].get('wall_s', 0):.0f}s  img/s {d['run'].get('qat_images_per_s', 0):.0f}")
print("  per epoch AP: " + " ".join(f"{r['map']:.4f}" for r in qat))
at = d["run"].get("accuracy_target")
if at:
    print(f"  target {at['target_ap']:.4f} met={at['met']} fp={at['fp_layers']} flop_share={at['fp_flop_share']:.4f}")
EOF
done
