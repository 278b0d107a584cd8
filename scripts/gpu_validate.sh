#!/usr/bin/env bash
# Runs the GPU measurements of docs/results.md and docs/perf.md on a CUDA machine
# that has the release binary at dist/yolo-qat and a torch 2.11 install (for libtorch).
#   scripts/gpu_validate.sh STAGE... ; stages: data eval bench benchcl quant384 quant640 quant384lrN
#   sensitive skip deploy ptq-METHOD-SEED headSIZEeEPOCHSlrSCALE q:NAME:EPOCHS:IMGSZ:FLAG,FLAG
# Logs go to $OUT (default runs/gpu_validate); the last lines printed are a summary.
set -uo pipefail
OUT="${OUT:-runs/gpu_validate}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib:${LD_LIBRARY_PATH:-}"
Y=dist/yolo-qat
W=assets/demo/yolov9-t-shapes-converted.pt
D=/tmp/shapes/shapes.yaml
SHAPES="${SHAPES:-dist/make_shapes.py}"
summary=()
note() { summary+=("$*"); echo "== $*"; }
timed() { local t0=$EPOCHREALTIME; "$@"; local rc=$?; python3 -c "print(round($EPOCHREALTIME - $t0, 2))" > /tmp/last_time; return $rc; }

for stage in "$@"; do
  case "$stage" in
  data)
    timed python3 "$SHAPES" /tmp/shapes --train 6000 --val 600 --seed 1 > "$OUT/data.log" 2>&1
    note "data: $(tail -1 "$OUT/data.log") in $(cat /tmp/last_time) s" ;;
  eval)
    for s in 384 640; do
      timed $Y eval --weights $W --data $D --imgsz $s --batch-size 32 --device cuda:0 --project /tmp/ev --name s$s --exist-ok > "$OUT/eval$s.log" 2>&1
      note "eval gpu fp16 $s: $(grep -E '^ +all' "$OUT/eval$s.log" | tr -s ' ') | $(grep Speed "$OUT/eval$s.log") | command $(cat /tmp/last_time) s"
    done ;;
  bench)
    for b in 10 32; do
      for mode in ${BENCH_MODES:-graph eager}; do
        extra=(); [ $mode = eager ] && extra=(--no-cuda-graph)
        $Y bench qat --cfg configs/gelan-c.yaml --imgsz 640 --batch-size $b --iters 30 --warmup 5 --data $D "${extra[@]}" > "$OUT/bench_qat$b$mode.log" 2>&1
        note "bench qat gelan-c 640 b$b $mode: $(tail -1 "$OUT/bench_qat$b$mode.log")"
      done
    done
    $Y bench infer --cfg configs/gelan-c.yaml --imgsz 640 --batch-size 32 --iters 30 > "$OUT/bench_infer.log" 2>&1
    note "bench infer gelan-c 640 b32 fp16: $(tail -1 "$OUT/bench_infer.log")" ;;
  benchcl)
    # The bench stage's CUDA-graph rows again in channels-last layout.
    for b in 10 32; do
      $Y bench qat --cfg configs/gelan-c.yaml --imgsz 640 --batch-size $b --iters 30 --warmup 5 --data $D --channels-last > "$OUT/bench_qat${b}cl.log" 2>&1
      note "bench qat gelan-c 640 b$b graph channels-last: $(tail -1 "$OUT/bench_qat${b}cl.log")"
    done
    $Y bench infer --cfg configs/gelan-c.yaml --imgsz 640 --batch-size 32 --iters 30 --channels-last > "$OUT/bench_infercl.log" 2>&1
    note "bench infer gelan-c 640 b32 fp16 channels-last: $(tail -1 "$OUT/bench_infercl.log")" ;;
  quant384|quant640|quant384lr10|quant384lr100)
    s=${stage#quant}; s=${s%%lr*}; lr=1; [[ $stage == *lr* ]] && lr=${stage##*lr}
    timed $Y quantize --weights $W --data $D --imgsz $s --device cuda:0 --lr-scale $lr --project /tmp/q --name $stage --exist-ok > "$OUT/$stage.log" 2>&1
    cp /tmp/q/$stage/report.json "$OUT/report_$stage.json" 2>/dev/null
    note "$stage: $(python3 -c "import json;d=json.load(open('/tmp/q/$stage/report.json'));print(d['run'], [(r['name'], round(r['map'],4)) for r in d['rows'] if not r['name'].startswith('QAT-') or r['name']=='QAT-Best'])")"
    ptq=$(ls /tmp/q/$stage/weights/ptq_ap_*)
    $Y eval --weights $ptq --data $D --imgsz $s --batch-size 32 --device cuda:0 --fp32 --project /tmp/ev --name ptq$stage --exist-ok > "$OUT/eval_ptq_fp32_$stage.log" 2>&1
    note "  PTQ eval fp32: $(grep -E '^ +all' "$OUT/eval_ptq_fp32_$stage.log" | tr -s ' ')" ;;
  deploy)
    # QAT (short), export FP and INT8 ONNX (dynamic), evaluate both with ONNX Runtime on the CPU.
    export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(ls "$(python3 -c 'import onnxruntime,os;print(os.path.dirname(onnxruntime.__file__))')"/capi/libonnxruntime.so* | head -1)}"
    s=${DEPLOY_IMGSZ:-384}
    timed $Y quantize --weights $W --data $D --imgsz $s --device cuda:0 --epochs ${DEPLOY_EPOCHS:-3} --project /tmp/q --name deploy$s --exist-ok > "$OUT/deploy_quant.log" 2>&1
    q=/tmp/q/deploy$s/weights/qat_best_yolov9-t-shapes-converted.safetensors
    note "deploy quantize $s: $(python3 -c "import json;d=json.load(open('/tmp/q/deploy$s/report.json'));print([(r['name'], round(r['map'],4)) for r in d['rows'] if r['name'] in ('Origin','PTQ','QAT-Best')])")"
    $Y eval --weights $q --data $D --imgsz $s --batch-size 32 --device cuda:0 --fp32 --project /tmp/ev --name fq$s --exist-ok > "$OUT/deploy_fq.log" 2>&1
    note "  fake-quant fp32 (torch): $(grep -E '^ +all' "$OUT/deploy_fq.log" | tr -s ' ')"
    $Y export --weights $q --dynamic --imgsz $s --output /tmp/int8.onnx > "$OUT/deploy_export.log" 2>&1 && \
    $Y export --weights $W --dynamic --imgsz $s --output /tmp/fp.onnx >> "$OUT/deploy_export.log" 2>&1
    for m in int8 fp; do
      $Y eval --weights /tmp/$m.onnx --data $D --imgsz $s --batch-size 32 --device cpu --project /tmp/ev --name ort$m$s --exist-ok > "$OUT/deploy_ort_$m.log" 2>&1
      note "  ORT CPU $m: $(grep -E '^ +all' "$OUT/deploy_ort_$m.log" | tr -s ' ') | $(grep Speed "$OUT/deploy_ort_$m.log")"
    done ;;
  sensitive)
    timed $Y sensitive --weights $W --data $D --imgsz 384 --device cuda:0 --project /tmp/sens --name s --exist-ok > "$OUT/sensitive.log" 2>&1
    cp /tmp/sens/s/sensitivity.json "$OUT/" 2>/dev/null
    note "sensitive ($(cat /tmp/last_time) s): $(grep -A6 '^rank' "$OUT/sensitive.log" | tr -s ' ' | tr '\n' ';')" ;;
  skip)
    top2=$(python3 -c "import json;d=json.load(open('/tmp/sens/s/sensitivity.json'));l=sorted(d['layers'],key=lambda x:-x['gain']);print(','.join(x['layer'] for x in l[:2]))")
    # Same budget for both rows: ${SKIP_EPOCHS:-3} epochs, with and without the two most sensitive layers.
    for name in full skip; do
      extra=(); [ $name = skip ] && extra=(--skip-layers "$top2")
      timed $Y quantize --weights $W --data $D --imgsz 384 --device cuda:0 --epochs ${SKIP_EPOCHS:-3} --no-eval-origin "${extra[@]}" --project /tmp/q --name $name --exist-ok > "$OUT/$name.log" 2>&1
      cp /tmp/q/$name/report.json "$OUT/report_$name.json" 2>/dev/null
      note "quantize 384 $name ${extra[*]} ($(cat /tmp/last_time) s): $(python3 -c "import json;d=json.load(open('/tmp/q/$name/report.json'));print([(r['name'], round(r['map'],4)) for r in d['rows']])")"
    done ;;
  ptq-*)
    # ptq-METHOD-SEED: calibration only (no QAT), e.g. ptq-mse-57, ptq-percentile-57.
    IFS=- read -r _ method seed <<< "$stage"
    timed $Y quantize --weights $W --data $D --imgsz 384 --device cuda:0 --epochs 0 --no-eval-origin --calib-method $method --seed $seed --project /tmp/q --name $stage --exist-ok > "$OUT/$stage.log" 2>&1
    note "$stage ($(cat /tmp/last_time) s): $(python3 -c "import json;d=json.load(open('/tmp/q/$stage/report.json'));print([(r['name'], round(r['map'],4)) for r in d['rows']])")" ;;
  head*)
    # headSIZEeEPOCHSlrSCALE: QAT with --supervise-head, e.g. head384e3lr1.
    s=${stage#head}; ep=${s#*e}; ep=${ep%%lr*}; lr=${s##*lr}; s=${s%%e*}
    timed $Y quantize --weights $W --data $D --imgsz $s --device cuda:0 --epochs $ep --lr-scale $lr --supervise-head --no-eval-origin --project /tmp/q --name $stage --exist-ok > "$OUT/$stage.log" 2>&1
    cp /tmp/q/$stage/report.json "$OUT/report_$stage.json" 2>/dev/null
    note "$stage ($(cat /tmp/last_time) s): $(python3 -c "import json;d=json.load(open('/tmp/q/$stage/report.json'));print([(r['name'], round(r['map'],4)) for r in d['rows']])")" ;;
  q:*)
    # q:NAME:EPOCHS:IMGSZ:FLAG,FLAG,... e.g. q:refties:0:384:--ties,reference (commas become spaces).
    IFS=: read -r _ name ep s flags <<< "$stage"
    timed $Y quantize --weights $W --data $D --imgsz $s --device cuda:0 --epochs $ep --no-eval-origin ${flags//,/ } --project /tmp/q --name $name --exist-ok > "$OUT/$name.log" 2>&1
    cp /tmp/q/$name/report.json "$OUT/report_$name.json" 2>/dev/null
    note "$name [${flags//,/ }] ($(cat /tmp/last_time) s): $(python3 -c "import json;d=json.load(open('/tmp/q/$name/report.json'));print([(r['name'], round(r['map'],4)) for r in d['rows']], d['run'].get('qat_images_per_s'))")" ;;
  *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
echo; echo "SUMMARY"; printf '%s\n' "${summary[@]}"
