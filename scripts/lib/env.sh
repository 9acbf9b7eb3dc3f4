# shellcheck shell=bash
# Source this file (`. scripts/lib/env.sh`): it sets the cache locations that matcha's scripts share.
#   MATCHA_CACHE    root of everything expensive (venv, exported models, references, test images)
#   MATCHA_VENV     the pinned Python venv for tools/ (export and reference checks)
#   ORT_DYLIB_PATH  the onnxruntime shared library the Rust `ort` crate loads at run time
# Existing values win, so a user can point any of them elsewhere.
export MATCHA_CACHE="${MATCHA_CACHE:-$HOME/.cache/matcha}"
export MATCHA_VENV="${MATCHA_VENV:-$MATCHA_CACHE/venv}"
# onnxruntime version of the shared library: the pin in tools/requirements.txt (the Rust `ort` crate is built with
# feature api-31 and refuses a library older than 1.31).
_matcha_req="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/../.." 2>/dev/null && pwd)/tools/requirements.txt"
if [ -z "${MATCHA_ORT_VERSION:-}" ] && [ -f "$_matcha_req" ]; then
  MATCHA_ORT_VERSION="$(sed -n 's/^onnxruntime==\([0-9.]*\).*/\1/p' "$_matcha_req" | head -1)"
fi
unset _matcha_req
export MATCHA_ORT_VERSION="${MATCHA_ORT_VERSION:-1.32.0}"
export MATCHA_ORT_DIR="${MATCHA_ORT_DIR:-$MATCHA_CACHE/onnxruntime/$MATCHA_ORT_VERSION}"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$MATCHA_ORT_DIR/libonnxruntime.so.$MATCHA_ORT_VERSION}"
case ":$PATH:" in
  *":$MATCHA_VENV/bin:"*) ;;
  *) export PATH="$MATCHA_VENV/bin:$PATH" ;;
esac
