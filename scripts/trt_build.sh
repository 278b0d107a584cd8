#!/usr/bin/env bash
# Builds a TensorRT engine from a yolo-qat ONNX export (for users with TensorRT).
#
#   scripts/trt_build.sh MODEL.onnx [ENGINE] [MIN_SHAPE OPT_SHAPE MAX_SHAPE]
#
# A Q/DQ export builds as INT8 where the Q/DQ pairs are (explicit quantization:
# TensorRT takes the scales from the model, no calibration cache) and FP16
# elsewhere (skipped layers, the DFL conv, the decode); an FP export builds as
# FP16. For a `--dynamic` or end2end export give the shape range of `images`,
# e.g. 1x3x640x640 8x3x640x640 16x3x640x640 (end2end exports have a dynamic
# batch even when height and width are fixed).
#
# Segmentation end2end exports (`--end2end --nms trt`) use EfficientNMSX_TRT, which
# TensorRT's own plugin library does not have: set TRT_PLUGINS to the shared library
# that registers it (passed to trtexec as --staticPlugins); ROIAlign_TRT is TensorRT's.
#
# What trtexec prints:
# * with --verbose and --dumpLayerInfo (--profilingVerbosity=detailed): every
#   engine layer with its precision; quantized convs appear as fused
#   "...Conv..." layers with Int8 inputs/outputs, FP layers as Half/Float.
#   The per-layer table is also written to ENGINE.layers.json here.
# * at the end, "Throughput: N qps" and the latency percentiles (GPU compute
#   time, H2D/D2H transfers) of the inference runs it timed; compare an INT8
#   build with the FP16 build of the FP export at the same batch.
set -euo pipefail
if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
onnx="$1"
engine="${2:-${onnx%.onnx}.engine}"
command -v trtexec >/dev/null || { echo "trt_build: trtexec not found (install TensorRT and put its bin/ on PATH)" >&2; exit 1; }
[[ -f "$onnx" ]] || { echo "trt_build: $onnx: no such file" >&2; exit 1; }
shapes=()
if [[ $# -ge 5 ]]; then
  shapes=(--minShapes="images:$3" --optShapes="images:$4" --maxShapes="images:$5")
fi
# EfficientNMS_TRT and ROIAlign_TRT (end2end exports) come from TensorRT's plugin library,
# which trtexec loads; EfficientNMSX_TRT needs the library named by TRT_PLUGINS.
plugins=()
if grep -q EfficientNMSX_TRT "$onnx"; then
  [[ -n "${TRT_PLUGINS:-}" ]] || { echo "trt_build: $onnx uses EfficientNMSX_TRT: set TRT_PLUGINS to the plugin library that registers it" >&2; exit 1; }
  [[ -f "$TRT_PLUGINS" ]] || { echo "trt_build: TRT_PLUGINS=$TRT_PLUGINS: no such file" >&2; exit 1; }
  plugins=(--staticPlugins="$TRT_PLUGINS")
fi
trtexec --onnx="$onnx" --int8 --fp16 --saveEngine="$engine" "${shapes[@]}" "${plugins[@]}" \
  --verbose --profilingVerbosity=detailed --dumpLayerInfo --exportLayerInfo="${engine}.layers.json"
echo "trt_build: wrote $engine (layer precisions in ${engine}.layers.json)"
