#!/usr/bin/env bash
# Writes interpose/data/libcudart.so.13.exports: every symbol NVIDIA's libcudart.so.13 exports,
# one `name version` line each (`cudaMalloc libcudart.so.13`), sorted bytewise (LC_ALL=C).
# Defined dynamic symbols only; the version-definition symbol GNU ld adds (`libcudart.so.13`,
# ABS, not callable) is left out.
#
# Usage: scripts/gen-cudart-exports.sh [--check] [LIB]
#   LIB     NVIDIA's libcudart.so.13 (default: $REMORA_CUDA_ROOT/lib, the `nvidia` wheels python3
#           can import, or /opt/nvcc-venv); made from nvidia-cuda-runtime 13.0.96:
#           pip install nvidia-cuda-runtime==13.0.96
#   --check exit 1 if the committed file differs from what LIB gives.
# Needs readelf (binutils).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=interpose/data/libcudart.so.13.exports

check=0
lib=
for a in "$@"; do
  case $a in
    --check) check=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) lib=$a ;;
  esac
done

if [ -z "$lib" ]; then
  for c in ${REMORA_CUDA_ROOT:+"$REMORA_CUDA_ROOT/lib/libcudart.so.13"} \
           $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13/lib/libcudart.so.13") for p in nvidia.__path__))' 2>/dev/null || true) \
           /opt/nvcc-venv/lib/python3*/site-packages/nvidia/cu13/lib/libcudart.so.13; do
    if [ -f "$c" ]; then lib=$c; break; fi
  done
fi
[ -n "$lib" ] && [ -f "$lib" ] || { echo "gen-cudart-exports: no libcudart.so.13 found; pass its path" >&2; exit 2; }

soname=$(readelf -d -W "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libcudart.so.13 ] || { echo "gen-cudart-exports: $lib has SONAME '$soname', not libcudart.so.13" >&2; exit 2; }

# readelf columns: Num Value Size Type Bind Vis Ndx Name[@[@]version]
new=$(readelf --dyn-syms -W "$lib" \
  | awk 'NR > 3 && $7 != "UND" && $7 != "ABS" && ($5 == "GLOBAL" || $5 == "WEAK") && $8 != "" {
           n = $8; v = "-";
           if ((i = index(n, "@@")) > 0) { v = substr(n, i + 2); n = substr(n, 1, i - 1) }
           else if ((i = index(n, "@")) > 0) { v = substr(n, i + 1); n = substr(n, 1, i - 1) }
           print n, v
         }' \
  | LC_ALL=C sort -u)
count=$(printf '%s\n' "$new" | wc -l)

if [ $check = 1 ]; then
  if ! diff -u "$OUT" <(printf '%s\n' "$new"); then
    echo "gen-cudart-exports: $OUT differs from $lib: run scripts/gen-cudart-exports.sh" >&2
    exit 1
  fi
  echo "$OUT is up to date ($count exports of $lib)"
else
  printf '%s\n' "$new" > "$OUT"
  echo "wrote $OUT: $count exports of $lib"
fi
