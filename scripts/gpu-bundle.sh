#!/usr/bin/env bash
# Prepares everything the GPU check needs, on the build machine, into one
# folder small enough to travel (scripts/gpu-check.sh runs it on the GPU
# machine). The compiler links LLVM and cannot travel; smelt-rt (no LLVM)
# and compiled artifacts can. See docs/gpu.md.
#
# Usage: scripts/gpu-bundle.sh [OUT]        (default OUT=.cache/gpu-bundle)
# Env:   CASES=.cache/onnx-node  conformance cases
#        PROFILE=dev|release     profile of the smelt compiler build (dev)
#        WORK=.cache/gpu-bundle-work  ONNX models (hundreds of MB; not bundled)
#        PYTHON=.venv/bin/python  python with onnx, onnxruntime, numpy
#
# Writes OUT/{smelt-rt, conformance/, interp.json, bench/<name>/, data/<name>/,
# bundle-info.json, gpu-bundle.log} and OUT.tar.gz. A step that fails is
# reported and the rest still run (the GPU side reports what is missing);
# the exit status is non-zero if any failed.
set -u
cd "$(dirname "$0")/.."

OUT=${1:-.cache/gpu-bundle}
CASES=${CASES:-.cache/onnx-node}
PROFILE=${PROFILE:-dev}
WORK=${WORK:-.cache/gpu-bundle-work}
TARGET=sm_90a
TD=${CARGO_TARGET_DIR:-target}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
case $PROFILE in
  dev) SMELT=$TD/debug/smelt; PROFILE_FLAG= ;;
  release) SMELT=$TD/release/smelt; PROFILE_FLAG=--release ;;
  *) echo "gpu-bundle: PROFILE must be dev or release" >&2; exit 2 ;;
esac

# A stale bundle could pass for a fresh one on the GPU machine.
rm -rf "$OUT" "$OUT.tar.gz"
mkdir -p "$OUT/bench" "$OUT/data"
LOG=$OUT/gpu-bundle.log
# Everything into the log too (it travels with the bundle); fds 3/4 keep the
# terminal so that the log is closed before it is packed.
exec 3>&1 4>&2 > >(tee "$LOG") 2>&1

FAILED=()
fail() {
  echo "gpu-bundle: FAILED: $1"
  FAILED+=("$1")
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

echo "== build smelt ($PROFILE) and smelt-rt (release)"
# Without the compiler nothing else can be made: stop here.
cargo build $PROFILE_FLAG -p smelt || { fail "build smelt"; exit 1; }
if cargo build --release --bin smelt-rt; then
  cp "$TD/release/smelt-rt" "$OUT/smelt-rt"
  echo "smelt-rt: $(mib "$(stat -c %s "$OUT/smelt-rt")") (glibc >= $(objdump -T "$OUT/smelt-rt" 2>/dev/null |
    grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 | cut -d_ -f2) needed on the GPU machine)"
else
  fail "build smelt-rt"
fi

echo "== conformance: compile every case for $TARGET into $OUT/conformance"
# Exit status is not the verdict (failing cases make it non-zero); the JSON
# report is. bundle.json says which cases compiled and why the rest did not.
if [ -d "$CASES" ]; then
  "$SMELT" conformance "$CASES" --target $TARGET --bundle "$OUT/conformance" --json "$OUT/bundle.json" |
    tail -n 3
  [ -s "$OUT/bundle.json" ] || fail "conformance bundle"
  echo "== conformance: interpreter pass list (the denominator of GPU passes / interpreter passes)"
  "$SMELT" conformance "$CASES" --json "$OUT/interp.json" | tail -n 1
  [ -s "$OUT/interp.json" ] || fail "interpreter conformance"
else
  fail "conformance: $CASES is missing (make cases)"
fi

echo "== benchmark models (ONNX into $WORK)"
if ! "$PYTHON" scripts/gpu_check.py prepare "$WORK"; then
  fail "prepare benchmark models"
fi

echo "== compile the benchmarks for $TARGET"
for name in $("$PYTHON" scripts/gpu_check.py names); do
  model=$WORK/$name/model.onnx
  art=$OUT/bench/$name
  if [ ! -f "$model" ]; then
    fail "compile $name: no $model"
    continue
  fi
  # The compiler's own error goes into NAME.FAILED, so the GPU side can say
  # why a benchmark is missing instead of only that it is.
  if "$SMELT" compile "$model" --target $TARGET -o "$art" >"$OUT/bench/$name.compile.txt" 2>&1; then
    # The compiler's lowering line says how many kernels and which GEMM
    # path (tensor-core or kernel-IR) each benchmark got.
    echo "$name: $(grep -m1 -o 'sm_90a: .*' "$OUT/bench/$name.compile.txt" | sed 's/ *[0-9.]* s$//')"
  else
    rm -rf "$art"
    mv "$OUT/bench/$name.compile.txt" "$OUT/bench/$name.FAILED"
    fail "compile $name: $(tail -n 3 "$OUT/bench/$name.FAILED" | tr '\n' ' ' | cut -c1-400)"
    continue
  fi
  # Inputs and onnxruntime's outputs are small only for the transformer
  # models; the GPU side generates the 256 MiB elementwise and GEMM inputs.
  if ls "$WORK/$name"/*.npy >/dev/null 2>&1; then
    mkdir -p "$OUT/data/$name"
    cp "$WORK/$name"/*.npy "$OUT/data/$name/"
  fi
done

# What was bundled, from which commit: the results file quotes it.
"$PYTHON" - "$OUT" "${FAILED[@]+"${FAILED[@]}"}" <<'EOF'
import json, os, subprocess, sys
out, failed = sys.argv[1], sys.argv[2:]
def git(*a):
    return subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
info = {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "target": "sm_90a", "failed_steps": failed}
p = os.path.join(out, "bundle.json")
if os.path.exists(p):
    b = json.load(open(p))
    info["conformance_compiled"] = b["passed"]
    info["conformance_cases"] = b["total"]
with open(os.path.join(out, "bundle-info.json"), "w") as f:
    json.dump(info, f, indent=2)
EOF

echo "== pack"
# Artifacts hold uncompressed weights (hundreds of MB for the two models);
# their pattern weights compress by orders of magnitude, so the .tar.gz is
# what travels.
exec >&3 2>&4
sleep 0.2 # let tee write its last lines before the log is packed
tar czf "$OUT.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")"
size=$(stat -c %s "$OUT.tar.gz")
{
  echo "bundle: $OUT ($(mib "$(du -sb "$OUT" | cut -f1)") unpacked)"
  echo "packed: $OUT.tar.gz $(mib "$size")"
  [ "$size" -le $((60 * 1048576)) ] || echo "gpu-bundle: WARNING: over 60 MiB; it may not travel"
  if [ ${#FAILED[@]} -gt 0 ]; then
    echo "gpu-bundle: ${#FAILED[@]} step(s) failed:"
    printf '  %s\n' "${FAILED[@]}"
  fi
} | tee -a "$LOG"
[ ${#FAILED[@]} -eq 0 ]
