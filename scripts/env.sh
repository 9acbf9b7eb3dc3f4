# shellcheck shell=bash
# Source this file (`. scripts/env.sh`): it sets the cache locations that matcha's scripts share.
#   MATCHA_CACHE    root of everything expensive (venv, exported models, references, test images)
#   MATCHA_VENV     the pinned Python venv for tools/ (export and reference checks)
#   ORT_DYLIB_PATH  the onnxruntime shared library the Rust `ort` crate loads at run time
# Existing values win, so a user can point any of them elsewhere.
export MATCHA_CACHE="${MATCHA_CACHE:-$HOME/.cache/matcha}"
export MATCHA_VENV="${MATCHA_VENV:-$MATCHA_CACHE/venv}"
# onnxruntime version the Rust side is built against (ort crate feature api-31 needs >= 1.31).
export MATCHA_ORT_VERSION="${MATCHA_ORT_VERSION:-1.32.0}"
export MATCHA_ORT_DIR="${MATCHA_ORT_DIR:-$MATCHA_CACHE/onnxruntime/$MATCHA_ORT_VERSION}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$MATCHA_ORT_DIR/libonnxruntime.so.$MATCHA_ORT_VERSION}"
case ":$PATH:" in
  *":$MATCHA_VENV/bin:"*) ;;
  *) export PATH="$MATCHA_VENV/bin:$PATH" ;;
esac
