#!/usr/bin/env bash
# The GPU check, run ON the GPU machine from the repo root, on a bundle made
# by scripts/gpu-bundle.sh on the build machine (see docs/gpu.md).
#
# Usage: scripts/gpu-check.sh [BUNDLE] [gpu_check.py run options...]
#        (default BUNDLE=.cache/gpu-bundle; BUNDLE.tar.gz is unpacked when
#        only the archive travelled)
# Env:   PYTHON=python3  python with torch (CUDA) and numpy
#
# Writes gpu-check-results.json and gpu-check-results.md in the repo root.
# Exit status: 0 all steps ran, 1 some step failed (see the .md), 2 no GPU.
set -u
cd "$(dirname "$0")/.."

BUNDLE=${1:-.cache/gpu-bundle}
shift || true
PYTHON=${PYTHON:-python3}

# Without a GPU every number would be missing: say so plainly and fail, so
# that nobody mistakes an empty run for a passing one.
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "gpu-check: no NVIDIA GPU on this machine; nothing was run"
  exit 2
fi
nvidia-smi -L

BUNDLE=${BUNDLE%/}
if [ ! -d "$BUNDLE" ] && [ -f "$BUNDLE.tar.gz" ]; then
  echo "gpu-check: unpacking $BUNDLE.tar.gz"
  tar xzf "$BUNDLE.tar.gz" -C "$(dirname "$BUNDLE")" || exit 1
fi
if [ ! -d "$BUNDLE" ]; then
  echo "gpu-check: $BUNDLE: no bundle (make it with scripts/gpu-bundle.sh on the build machine)"
  exit 1
fi

"$PYTHON" scripts/gpu_check.py run "$BUNDLE" "$@"
rc=$?
# On the lent device machine only what lands in $OUT comes back.
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
  cp gpu-check-results.json gpu-check-results.md gpu-check-conformance.json "$OUT"/ 2>/dev/null
fi
exit $rc
