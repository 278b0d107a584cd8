#!/usr/bin/env bash
# Several `quantize` runs side by side on one GPU (a small model leaves most of an
# H200 idle), then one table: Origin / PTQ / QAT-Best per run, epochs, wall time.
#   scripts/gpu_sweep.sh NAME@IMGSZ=FLAG,FLAG ... (commas become spaces)
#   e.g. scripts/gpu_sweep.sh seed@384=--recipe,seed default@384= big@640=--lr,3e-5
# Needs dist/yolo-qat, dist/make_shapes.py and a torch 2.11 install (for libtorch).
# A NAME starting with `dep-` is also exported (dynamic Q/DQ ONNX), checked against
# TensorRT's rules and evaluated through ONNX Runtime on the CPU after its run.
# Env: WORKERS (loader threads per run, 3), DEADLINE (seconds before the table is
# printed and unfinished runs are stopped, 540), WEIGHTS (the checkpoint), SEG=1 (polygon
# labels: the same images from `make_shapes.py --seg`, for a segmentation checkpoint).
set -uo pipefail
OUT="${OUT:-runs/gpu_sweep}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
Y=dist/yolo-qat
W=${WEIGHTS:-assets/demo/yolov9-t-shapes-converted.pt}
if [ "${SEG:-0}" = 1 ]; then DATA_DIR=/tmp/shapes-seg SEG_FLAG=--seg; else DATA_DIR=/tmp/shapes SEG_FLAG=; fi
D=$DATA_DIR/shapes.yaml
t0=$EPOCHREALTIME
if [ ! -f $D ]; then
  python3 dist/make_shapes.py $DATA_DIR --train 6000 --val 600 --seed 1 $SEG_FLAG > "$OUT/data.log" 2>&1 || { tail "$OUT/data.log"; exit 1; }
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
  [ "${SEG:-0}" = 1 ] && deploy_end2end $n $s $q
}
# Segmentation: both end-to-end graphs (TensorRT plugins; standard ops), checked, and the
# standard-ops one run by ONNX Runtime on the first val images.
deploy_end2end() {
  local n=$1 s=$2 q=$3
  for nms in trt onnx; do
    $Y export --weights $q --end2end --nms $nms --imgsz $s --output /tmp/$n-e2e-$nms.onnx >> /tmp/q_${n}_deploy.log 2>&1 && echo "end2end $nms: exported" >> /tmp/q_${n}_deploy.log
  done
  python3 - /tmp/$n-e2e-onnx.onnx $DATA_DIR/images/val $s >> /tmp/q_${n}_deploy.log 2>&1 <<'EOF'
import sys, os, numpy as np, onnxruntime as ort
from PIL import Image
path, val, s = sys.argv[1], sys.argv[2], int(sys.argv[3])
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
files = sorted(os.listdir(val))[:8]
x = np.stack([np.asarray(Image.open(os.path.join(val, f)).convert("RGB").resize((s, s)), dtype=np.float32).transpose(2, 0, 1) / 255 for f in files])
num, boxes, scores, classes, masks = sess.run(None, {"images": x})
on = [(masks[b, :num[b, 0]] > 0.5).mean() for b in range(len(files)) if num[b, 0] > 0]
print(f"end2end onnx ORT: {len(files)} images, detections per image {num[:, 0].tolist()}, det_masks {list(masks.shape)}, mean mask fill {np.mean(on):.3f}")
EOF
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
    grep -E "TensorRT check|convs:|error|all |end2end" /tmp/q_${n}_deploy.log | head -14
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
def fmt(r):
    if not r:
        return "-"
    mask = f" mask {r['mask_map']:.4f}/{r['mask_map50']:.4f}" if r.get("mask_map") is not None else ""
    return f"{r['map']:.4f}/{r['map50']:.4f}{mask}"
print(f"  Origin {fmt(rows.get('Origin'))}  PTQ {fmt(rows.get('PTQ'))}  QAT-Best {fmt(rows.get('QAT-Best'))}  epochs {len(qat)}  wall {d['run'].get('wall_s', 0):.0f}s  img/s {d['run'].get('qat_images_per_s', 0):.0f}")
print("  per epoch AP: " + " ".join(f"{r['map']:.4f}" for r in qat))
at = d["run"].get("accuracy_target")
if at:
    print(f"  target {at['target_ap']:.4f} met={at['met']} fp={at['fp_layers']} flop_share={at['fp_flop_share']:.4f}")
EOF
done
