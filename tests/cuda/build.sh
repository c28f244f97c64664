#!/usr/bin/env bash
# Builds every tests/cuda/NN_*.cu program with nvcc into OUTDIR (default target/cuda-tests) and
# writes OUTDIR/manifest.tsv ("name<TAB>kernels<TAB>gpus", one line per program).
#
# nvcc: $NVCC if set, else nvcc on PATH, else /usr/local/cuda/bin/nvcc (CUDA 13 toolkit), else
# NVIDIA's pip wheels in /opt/nvcc-venv (or $NVCC_VENV). With the pip wheels, libcudart.so (the
# link-time name) does not exist: a directory with a libcudart.so -> libcudart.so.13 symlink is
# made in OUTDIR/.cudart and passed with -L.
#
# Each program's first line says: // remora-test: kernels=yes|no  flags=<extra nvcc flags|none>  gpus=N
# Environment: JOBS (parallel compiles, default: number of CPUs), NVCC_EXTRA (more flags for all).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/target/cuda-tests}
mkdir -p "$out"
out=$(cd "$out" && pwd)

venv=${NVCC_VENV:-/opt/nvcc-venv}
pipcu=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cu13 2>/dev/null | head -n 1 || true)
nvcc=${NVCC:-}
if [ -z "$nvcc" ]; then
  if command -v nvcc >/dev/null 2>&1; then
    nvcc=$(command -v nvcc)
  elif [ -x /usr/local/cuda/bin/nvcc ]; then
    nvcc=/usr/local/cuda/bin/nvcc
  elif [ -n "$pipcu" ] && [ -x "$pipcu/bin/nvcc" ]; then
    nvcc=$pipcu/bin/nvcc
  else
    echo "build.sh: no nvcc (set NVCC, put nvcc on PATH, or install the CUDA 13 pip wheels in $venv)" >&2
    exit 2
  fi
fi

# Library flags: a toolkit nvcc finds libcudart.so itself; the pip wheels need help.
cudadir=$(cd "$(dirname "$nvcc")/.." && pwd)
libflags=()
if [ -e "$cudadir/lib/libcudart.so.13" ] && [ ! -e "$cudadir/lib/libcudart.so" ] && [ ! -e "$cudadir/lib64/libcudart.so" ]; then
  mkdir -p "$out/.cudart"
  ln -sfn "$cudadir/lib/libcudart.so.13" "$out/.cudart/libcudart.so"
  libflags=(-L"$cudadir/lib" -L"$out/.cudart")
  echo "$cudadir/lib" >"$out/cudart-dir"
elif [ -e "$cudadir/lib64/libcudart.so.13" ]; then
  echo "$cudadir/lib64" >"$out/cudart-dir"
elif [ -e "$cudadir/lib/libcudart.so.13" ]; then
  echo "$cudadir/lib" >"$out/cudart-dir"
fi

base=(-O2 -cudart shared -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90)
echo "nvcc: $nvcc ($("$nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'))"

# header FILE FIELD -> value of FIELD in the "// remora-test:" line
header() {
  sed -n '1s/^\/\/ remora-test://p' "$1" | tr -s ' \t' '\n' | sed -n "s/^$2=//p"
}

jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
manifest=$out/manifest.tsv.tmp
: >"$manifest"
mkdir -p "$out/logs"
names=()
for src in "$here"/[0-9][0-9]_*.cu; do
  name=$(basename "$src" .cu)
  kernels=$(header "$src" kernels)
  flags=$(header "$src" flags)
  gpus=$(header "$src" gpus)
  if [ -z "$kernels" ] || [ -z "$flags" ] || [ -z "$gpus" ]; then
    echo "build.sh: $src: missing or malformed '// remora-test:' header" >&2
    exit 2
  fi
  [ "$flags" = none ] && flags=""
  flags=${flags//,/ }  # several flags are written comma-separated
  # shellcheck disable=SC2086  # the header's flags are split on purpose
  printf '%s\t%s\t%s\n' "$name" "$kernels" "$gpus" >>"$manifest"
  rm -f "$out/$name" "$out/logs/$name.rc"
  (
    rc=0
    "$nvcc" "${base[@]}" $flags ${NVCC_EXTRA:-} -I"$here" "${libflags[@]}" -o "$out/$name" "$src" \
      >"$out/logs/$name.log" 2>&1 || rc=$?
    echo "$rc" >"$out/logs/$name.rc"
  ) &
  names+=("$name")
  # Bound the number of compiles in flight.
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
done
wait

failed=0
for name in "${names[@]}"; do
  if [ "$(cat "$out/logs/$name.rc" 2>/dev/null)" != 0 ]; then
    echo "FAILED to build $name:" >&2
    cat "$out/logs/$name.log" >&2
    failed=$((failed + 1))
  fi
done
sort "$manifest" >"$out/manifest.tsv"
rm -f "$manifest"
echo "built $((${#names[@]} - failed)) of ${#names[@]} programs into $out"
[ "$failed" -eq 0 ]
