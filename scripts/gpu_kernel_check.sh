#!/usr/bin/env bash
# On a GPU machine: the fused CUDA kernels against the ops they replace (values and
# gradients, fp16 and fp32, NCHW and channels-last) and one QAT step fused vs unfused.
# Build here with `cargo test --release --no-run --test gpu_kernels`, copy the test
# binary to dist/gpu_kernels, carry dist/ and ../shared, then run this script there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
torch_lib="${TORCH_LIB:-$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')}"
cd "$here"
LD_LIBRARY_PATH="$torch_lib:${LD_LIBRARY_PATH:-}" dist/gpu_kernels --ignored --test-threads 1
