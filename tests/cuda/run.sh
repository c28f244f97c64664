#!/usr/bin/env bash
# Runs the programs that build.sh put in OUTDIR and checks their output.
#
#   run.sh OUTDIR native [FILTER]
#       Runs each program with NVIDIA's libcudart (the one build.sh linked against, from
#       OUTDIR/cudart-dir, unless CUDART_LIB names another dir) and saves stdout plus an
#       "exit: N" line to OUTDIR/expected/NAME.out (stderr to NAME.err). PASS = exit status 0.
#   run.sh OUTDIR remora [FILTER]
#       Runs each program with remora's libcudart.so.13 in front (LD_LIBRARY_PATH=$REMORA_LIB:...;
#       REMORA_SERVER set by the caller) and compares with OUTDIR/expected/NAME.out (from a native
#       run on the same machine; EXPECTED_DIR=tests/cuda/expected compares with the committed
#       H200 outputs instead) byte for byte.
#   run.sh OUTDIR remora-nokernels [FILTER]
#       The same for the kernels=no programs only, against the committed expectations in
#       tests/cuda/expected/ (or $EXPECTED_DIR): for CI without a GPU (remora's emulated backend).
#
# FILTER: a bash regular expression matched against program names (e.g. '^0[1-5]_' or 'memcpy').
# Environment: TIMEOUT (seconds per program, default 60); REMORA_LIB (dir holding remora's
# libcudart.so.13); REMORA_RUN (optional command prefix instead of LD_LIBRARY_PATH, e.g.
# "target/release/remora run --"); EXPECTED_DIR (where the expected NAME.out files are).
# Results go to OUTDIR/actual/NAME.{out,err} in the remora modes. Exit status: number of failures.
set -uo pipefail

usage() {
  echo "usage: $0 OUTDIR native|remora|remora-nokernels [FILTER]" >&2
  exit 2
}
[ $# -ge 2 ] || usage
out=$1
mode=$2
filter=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
timeout_s=${TIMEOUT:-60}
[ -f "$out/manifest.tsv" ] || { echo "run.sh: $out/manifest.tsv not found: run build.sh first" >&2; exit 2; }

runner=()
case $mode in
  native)
    lib=${CUDART_LIB:-$(cat "$out/cudart-dir" 2>/dev/null || true)}
    envlib=${lib:+$lib:}${LD_LIBRARY_PATH:-}
    expdir=$out/expected
    resdir=$out/expected
    ;;
  remora | remora-nokernels)
    if [ -n "${REMORA_RUN:-}" ]; then
      read -r -a runner <<<"$REMORA_RUN"
      envlib=${LD_LIBRARY_PATH:-}
    else
      [ -n "${REMORA_LIB:-}" ] || { echo "run.sh: set REMORA_LIB to the dir holding remora's libcudart.so.13 (or REMORA_RUN)" >&2; exit 2; }
      [ -e "$REMORA_LIB/libcudart.so.13" ] || { echo "run.sh: no libcudart.so.13 in $REMORA_LIB" >&2; exit 2; }
      envlib=$REMORA_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    [ -n "${REMORA_SERVER:-}${REMORA_RUN:-}" ] || echo "run.sh: note: REMORA_SERVER is not set" >&2
    if [ "$mode" = remora ]; then
      expdir=${EXPECTED_DIR:-$out/expected}
    else
      expdir=${EXPECTED_DIR:-$here/expected}
    fi
    resdir=$out/actual
    ;;
  *) usage ;;
esac
mkdir -p "$resdir"

pass=0
fail=0
failed=()
total_ms=0
: >"$resdir/times.tsv"
while IFS=$'\t' read -r name kernels gpus; do
  [ -n "$name" ] || continue
  if [ -n "$filter" ] && ! [[ $name =~ $filter ]]; then continue; fi
  if [ "$mode" = remora-nokernels ] && [ "$kernels" != no ]; then continue; fi
  bin=$out/$name
  res=$resdir/$name.out
  if [ ! -x "$bin" ]; then
    echo "FAIL $name (not built)"
    fail=$((fail + 1))
    failed+=("$name")
    continue
  fi
  rc=0
  t0=$(date +%s%N)
  LD_LIBRARY_PATH=$envlib timeout -k 5 "$timeout_s" ${runner[@]+"${runner[@]}"} "$bin" \
    >"$res" 2>"$resdir/$name.err" </dev/null || rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  total_ms=$((total_ms + ms))
  printf '%s\t%s\n' "$name" "$ms" >>"$resdir/times.tsv"
  echo "exit: $rc" >>"$res"
  note=""
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && note=" (timed out after ${timeout_s}s)"
  if [ "$mode" = native ]; then
    if [ "$rc" -eq 0 ]; then
      echo "PASS $name"
      pass=$((pass + 1))
    else
      echo "FAIL $name: exit $rc$note"
      sed -n '/FAIL/p' "$res" | head -n 5 | sed 's/^/    /'
      fail=$((fail + 1))
      failed+=("$name")
    fi
  else
    exp=$expdir/$name.out
    if [ ! -f "$exp" ]; then
      echo "FAIL $name: no expected output $exp"
      fail=$((fail + 1))
      failed+=("$name")
    elif cmp -s "$exp" "$res"; then
      echo "PASS $name"
      pass=$((pass + 1))
    else
      echo "FAIL $name: output differs from $exp$note"
      diff "$exp" "$res" | head -n 20 | sed 's/^/    /'
      fail=$((fail + 1))
      failed+=("$name")
    fi
  fi
done <"$out/manifest.tsv"

echo "summary ($mode): $pass passed, $fail failed${failed[0]+: ${failed[*]}}"
# Wall time of every program run (process start to exit; per program in RESDIR/times.tsv).
echo "time ($mode): $((total_ms / 1000)).$(printf '%03d' $((total_ms % 1000))) s for $((pass + fail)) programs"
[ "$fail" -gt 255 ] && fail=255
exit "$fail"
