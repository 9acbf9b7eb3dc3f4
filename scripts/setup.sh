#!/usr/bin/env bash
# One-command setup of matcha on a fresh Debian 12 machine (run as root or as a user with sudo). Idempotent: each
# step checks what is already there and skips it.
#
#   1. apt packages (build tools, Python venv, clang for bindgen, opencv-doc for the real test photos)
#   2. Rust toolchain check (cargo >= the rust-version in Cargo.toml; never downloaded here)
#   3. the pinned Python venv $MATCHA_VENV (a changed tools/requirements.txt, by hash stamp, is pip-installed into
#      it; the venv is only (re-)created when it is missing or its python/pip do not run)
#   4. the onnxruntime shared library, taken from the PyPI `onnxruntime` wheel -> $ORT_DYLIB_PATH
#   5. the ONNX models (tools/export_models.py, cached by the hash of their inputs) linked into engines/
#   6. the reference outputs and test photos for the parity tests (tools/reference_features.py, cached)
#   7. the main job (scripts/demo.sh): `matcha match` on a real stereo pair, `matcha eval` against ground truth, the ROS 2 node demo;
#      it also renders the bundled stereo VO sequence vo_short (tools/vo_sequences.py, cached)
#
# Options: --no-apt  --no-models  --no-references  --no-main   (skip those steps)
# Cache locations: see scripts/lib/env.sh (MATCHA_CACHE, default ~/.cache/matcha).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/lib/env.sh
. "$REPO/scripts/lib/env.sh"

DO_APT=1 DO_MODELS=1 DO_REFS=1 DO_MAIN=1
for arg in "$@"; do
  case "$arg" in
    --no-apt) DO_APT=0 ;;
    --no-models) DO_MODELS=0 ;;
    --no-references) DO_REFS=0 ;;
    --no-main) DO_MAIN=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> [setup] %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'ERROR [setup]: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

# ---------------------------------------------------------------------------------------------------------------
step "1/7 system packages"
APT_PACKAGES=(build-essential pkg-config python3-venv python3-dev python3-pip libclang-dev clang cmake opencv-doc
  libgl1 libglib2.0-0 unzip)
if [ "$DO_APT" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    info "installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then die "need root or sudo to install: ${missing[*]}"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    info "all present"
  fi
else
  info "skipped (--no-apt or no apt-get)"
fi

# ---------------------------------------------------------------------------------------------------------------
step "2/7 Rust toolchain"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
need_rust="$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"
if ! command -v cargo >/dev/null 2>&1; then
  die "cargo not found. Install Rust >= ${need_rust:-stable} with rustup (https://rustup.rs, or Debian's 'rustup'
       package on newer releases), e.g. as the user who builds: rustup toolchain install stable; then re-run this script."
fi
have_rust="$(rustc --version | awk '{print $2}')"
if [ -n "$need_rust" ] && [ "$(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -1)" != "$need_rust" ]; then
  die "rustc $have_rust is older than rust-version $need_rust in Cargo.toml: run 'rustup update stable'"
fi
info "rustc $have_rust (need >= ${need_rust:-any})"

# ---------------------------------------------------------------------------------------------------------------
step "3/7 Python venv $MATCHA_VENV"
PYTHON="${MATCHA_PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (apt-get install python3)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "$("$PYTHON" --version) is too old: tools/requirements.txt is pinned for Python >= 3.11"
req_hash="$(sha256sum tools/requirements.txt | cut -d' ' -f1)"
stamp="$MATCHA_VENV/.requirements.sha256"
if [ -x "$MATCHA_VENV/bin/python" ] && "$MATCHA_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$req_hash" ]; then
    info "up to date (requirements sha256 ${req_hash:0:12})"
  else
    # Changed pins go into the existing venv: re-creating it would download torch's ~5.5 GB again. pip leaves
    # packages that were dropped from the file in place (harmless: nothing imports them).
    info "requirements changed: pip install -r tools/requirements.txt into the existing venv"
    "$MATCHA_VENV/bin/pip" install --progress-bar off -r tools/requirements.txt
    echo "$req_hash" > "$stamp"
    info "done"
  fi
else
  [ -e "$MATCHA_VENV" ] && info "venv missing its python or pip: re-creating" && rm -rf "$MATCHA_VENV"
  mkdir -p "$(dirname "$MATCHA_VENV")"
  "$PYTHON" -m venv "$MATCHA_VENV"
  "$MATCHA_VENV/bin/pip" install -q --upgrade pip
  info "pip install -r tools/requirements.txt (torch pulls the CUDA wheels: ~5.5 GB, a few minutes)"
  "$MATCHA_VENV/bin/pip" install --progress-bar off -r tools/requirements.txt
  echo "$req_hash" > "$stamp"
  info "done"
fi

# ---------------------------------------------------------------------------------------------------------------
step "4/7 onnxruntime $MATCHA_ORT_VERSION shared library"
if [ -f "$ORT_DYLIB_PATH" ]; then
  info "present: $ORT_DYLIB_PATH"
else
  mkdir -p "$MATCHA_ORT_DIR"
  # The library inside the venv's onnxruntime wheel is the one we want when the versions agree; otherwise fetch the
  # wheel for this machine's architecture from PyPI (ordinary pip client) and take the one file out of it.
  src="$("$MATCHA_VENV/bin/python" - "$MATCHA_ORT_VERSION" <<'EOF' 2>/dev/null || true
import sys, pathlib, onnxruntime
if onnxruntime.__version__ == sys.argv[1]:
    p = pathlib.Path(onnxruntime.__file__).parent / "capi" / f"libonnxruntime.so.{sys.argv[1]}"
    print(p if p.is_file() else "")
EOF
)"
  if [ -n "$src" ]; then
    cp "$src" "$ORT_DYLIB_PATH.tmp"
  else
    tmpd="$(mktemp -d)"
    "$MATCHA_VENV/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11 \
      --platform "manylinux_2_28_$(uname -m)" "onnxruntime==$MATCHA_ORT_VERSION" -d "$tmpd"
    whl="$(ls "$tmpd"/onnxruntime-*.whl | head -1)"
    unzip -p "$whl" "onnxruntime/capi/libonnxruntime.so.$MATCHA_ORT_VERSION" > "$ORT_DYLIB_PATH.tmp"
    rm -rf "$tmpd"
  fi
  mv "$ORT_DYLIB_PATH.tmp" "$ORT_DYLIB_PATH"
  info "extracted: $ORT_DYLIB_PATH"
fi
info "the Rust side loads it through ORT_DYLIB_PATH (source scripts/lib/env.sh) or this default path"

# ---------------------------------------------------------------------------------------------------------------
step "5/7 ONNX models -> $MATCHA_CACHE/engines (linked into engines/)"
if [ "$DO_MODELS" = 1 ]; then
  "$MATCHA_VENV/bin/python" tools/export_models.py
  mkdir -p engines
  for f in "$MATCHA_CACHE"/engines/*.onnx "$MATCHA_CACHE"/engines/manifest.json; do
    [ -e "$f" ] || continue
    ln -sfn "$f" "engines/$(basename "$f")"
  done
  info "engines/: $(cd engines && ls -1 ./*.onnx 2>/dev/null | tr '\n' ' ')"
else
  info "skipped (--no-models)"
fi

# ---------------------------------------------------------------------------------------------------------------
step "6/7 reference outputs and test photos -> $MATCHA_CACHE/{references,data}"
if [ "$DO_REFS" = 1 ]; then
  "$MATCHA_VENV/bin/python" tools/reference_features.py
else
  info "skipped (--no-references)"
fi

# ---------------------------------------------------------------------------------------------------------------
step "7/7 main job: match a real stereo pair, pose accuracy against ground truth on four sets, stereo VO on a rendered sequence (CLI and ROS 2 node), the ROS 2 node on a rendered image sequence"
if [ "$DO_MAIN" = 1 ]; then
  # scripts/demo.sh: matcha match / eval / vo on the bundled data, then the ROS 2 node (PyPI wheels, loopback
  # netns) on the rendered stereo sequence and on a real-photo sequence
  "$REPO/scripts/demo.sh"
else
  info "skipped (--no-main)"
fi
printf '\n[setup] done. Use: . scripts/lib/env.sh   (MATCHA_CACHE=%s, ORT_DYLIB_PATH=%s)\n' "$MATCHA_CACHE" "$ORT_DYLIB_PATH"
