#!/usr/bin/env bash
# GPU checks on a machine with an NVIDIA GPU (docs/gpu.md, "What has been verified"):
#   1. the `#[ignore]`d GPU tests (tests/gpu.rs): the CUDA provider takes XFeat and the MATCHA chain, their
#      outputs agree with the CPU's, and MATCHA's intermediates stay in device memory (IO binding);
#   2. `matcha bench stream` with `runtime.providers: [cuda, cpu]` (float32 XFeat) and, on the same machine,
#      with `[cpu]` (the CPU default, INT8 XFeat), side by side;
#   3. with --torch: the full-size MATCHA PyTorch reference per stage (tools/matcha_perf_model.py --measure cuda).
#
# Needs: scripts/setup.sh done (engines, test photos, MATCHA fixtures in $MATCHA_CACHE); ORT_DYLIB_PATH pointing
# at onnxruntime-gpu's libonnxruntime.so.1.31.x with its libonnxruntime_providers_*.so beside it; the CUDA 13
# and cuDNN 9 libraries on LD_LIBRARY_PATH (see docs/gpu.md, step 2).
#
#   scripts/gpu_check.sh [--torch] [--frames N]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib/env.sh
. "$REPO/scripts/lib/env.sh"

TORCH=0
FRAMES=300
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) TORCH=1 ;;
    --frames) FRAMES="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

case "$(basename "$ORT_DYLIB_PATH")" in
  libonnxruntime.so.1.3[1-9]*) ;;
  *) echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH: point it at onnxruntime-gpu's libonnxruntime.so.1.31.x (docs/gpu.md)" >&2
     exit 1 ;;
esac
if [ ! -f "$(dirname "$ORT_DYLIB_PATH")/libonnxruntime_providers_cuda.so" ]; then
  echo "no libonnxruntime_providers_cuda.so beside $ORT_DYLIB_PATH: not the GPU build of ONNX Runtime" >&2
  exit 1
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "== GPU tests (tests/gpu.rs)"
cargo test --release --features cuda,tensorrt --test gpu -- --ignored --nocapture --test-threads 1

echo "== stream benchmark: CUDA (float32 XFeat) vs CPU default (INT8 XFeat), same machine"
cargo build --release --features cuda,tensorrt --bin matcha
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed -e 's/providers: \[[a-z, ]*\]/providers: [cuda, cpu]/' -e 's/precision: auto /precision: fp32 /' \
  config/matcha.yaml >"$tmp/cuda.yaml"
sed -e 's/providers: \[[a-z, ]*\]/providers: [cpu]/' config/matcha.yaml >"$tmp/cpu.yaml"
for c in cuda cpu; do
  echo "-- runtime.providers: $(sed -n 's/.*providers: \(\[[a-z, ]*\]\).*/\1/p' "$tmp/$c.yaml")"
  target/release/matcha --config "$tmp/$c.yaml" bench stream --frames "$FRAMES"
done

if [ "$TORCH" = 1 ]; then
  echo "== full-size MATCHA PyTorch reference per stage on the GPU (random weights)"
  "$MATCHA_VENV/bin/python" tools/matcha_perf_model.py --measure cuda --dtypes fp32,fp16
fi
