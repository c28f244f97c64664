#!/usr/bin/env python3
"""Generate interpose/src/cudart/errors/table.rs from NVIDIA's own libcudart.so.13.

The CUDA runtime's error names and strings are whatever NVIDIA's library returns, so this asks
it: a small C program dlopens the real libcudart.so.13 and calls cudaGetErrorName and
cudaGetErrorString for every code in 0..=1100, every value of `enum cudaError` in
driver_types.h and a few outliers. Both functions work without a GPU or driver. The script
checks the answers against the header (every enumerator known under its own name, every other
code answered with one "unrecognized" text) and writes the Rust table, plus the driver's
CUresult -> cudaError_t mapping derived from cuda.h.

Needs python3, gcc (or $CC), rustfmt, and NVIDIA's wheels:
    pip install nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88

Usage:
    scripts/gen-cuda-errors.py [--cuda DIR] [--check]

DIR is the wheel's nvidia/cu13 folder (with include/ and lib/libcudart.so.13). Default:
$REMORA_CUDA_ROOT, else the parent of $REMORA_CUDA_INCLUDE, else the `nvidia` package that this
python3 can import, else /opt/nvcc-venv. --check regenerates in memory and exits 1 if the
committed file differs.
"""

import argparse
import difflib
import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "interpose/src/cudart/errors/table.rs")
EXTRA_CODES = [-1, -(2**31), 2**31 - 1, 10001, 65535, 100000]

PROBE_C = r"""
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
typedef const char *(*str_fn)(int);
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
    str_fn name = (str_fn)dlsym(h, "cudaGetErrorName");
    str_fn text = (str_fn)dlsym(h, "cudaGetErrorString");
    int (*version)(int *) = (int (*)(int *))dlsym(h, "cudaRuntimeGetVersion");
    if (!name || !text || !version) { fprintf(stderr, "missing symbols\n"); return 2; }
    int v = 0;
    version(&v);
    printf("version\t%d\n", v);
    for (int i = 2; i < argc; i++) {
        int c = (int)strtol(argv[i], NULL, 10);
        printf("%d\t%s\t%s\n", c, name(c), text(c));
    }
    return 0;
}
"""


def die(msg):
    sys.exit("gen-cuda-errors: " + msg)


def find_cuda(arg):
    candidates = []
    if arg:
        candidates.append(arg)
    if os.environ.get("REMORA_CUDA_ROOT"):
        candidates.append(os.environ["REMORA_CUDA_ROOT"])
    if os.environ.get("REMORA_CUDA_INCLUDE"):
        candidates.append(os.path.dirname(os.path.abspath(os.environ["REMORA_CUDA_INCLUDE"])))
    try:
        import nvidia  # noqa: F401  (the wheels' namespace package)

        for p in nvidia.__path__:
            candidates.append(os.path.join(p, "cu13"))
    except ImportError:
        pass
    candidates += sorted(glob.glob("/opt/nvcc-venv/lib/python3*/site-packages/nvidia/cu13"))
    for c in candidates:
        if os.path.isfile(os.path.join(c, "lib/libcudart.so.13")) and os.path.isfile(
            os.path.join(c, "include/driver_types.h")
        ):
            return os.path.abspath(c)
    die("no CUDA 13 found (tried %s); pass --cuda DIR (the wheels' nvidia/cu13)" % (candidates or "nothing"))


def wheel_version(cuda):
    """The nvidia-cuda-runtime wheel's version, from its dist-info next to nvidia/."""
    site = os.path.dirname(os.path.dirname(cuda))
    for d in glob.glob(os.path.join(site, "nvidia_cuda_runtime-*.dist-info")):
        return os.path.basename(d)[len("nvidia_cuda_runtime-") : -len(".dist-info")]
    return None


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse_enum(text, pattern, what):
    m = re.search(pattern, text, re.S)
    if not m:
        die("%s not found" % what)
    out = []
    for item in strip_comments(m.group(1)).split(","):
        item = item.strip()
        if not item:
            continue
        mm = re.fullmatch(r"(\w+)\s*=\s*(-?\w+)", item)
        if not mm:
            die("cannot read %r in %s" % (item, what))
        out.append((mm.group(1), int(mm.group(2), 0)))
    return out


def probe(cuda, codes):
    cc = os.environ.get("CC", "gcc")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(PROBE_C)
        subprocess.run([cc, "-O1", "-o", exe, src, "-ldl"], check=True)
        lib = os.path.join(cuda, "lib/libcudart.so.13")
        out = subprocess.run([exe, lib] + [str(c) for c in codes], check=True, capture_output=True, text=True)
    lines = out.stdout.splitlines()
    version = int(lines[0].split("\t")[1])
    answers = {}
    for line in lines[1:]:
        code, name, text = line.split("\t")
        answers[int(code)] = (name, text)
    return version, answers


def rust_str(s):
    if any(ord(ch) < 0x20 or ord(ch) > 0x7E for ch in s):
        die("unexpected character in %r" % s)
    return 'c"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def generate(cuda):
    include = os.path.join(cuda, "include")
    with open(os.path.join(include, "driver_types.h")) as f:
        errors = parse_enum(f.read(), r"enum\s+__device_builtin__\s+cudaError\s*\{(.*?)\};", "enum cudaError")
    with open(os.path.join(include, "cuda.h")) as f:
        cu_results = parse_enum(f.read(), r"typedef\s+enum\s+cudaError_enum\s*\{(.*?)\}\s*CUresult;", "CUresult")

    header = dict((v, n) for n, v in errors)
    if len(header) != len(errors):
        die("duplicate values in enum cudaError")
    codes = sorted(set(range(0, 1101)) | set(header) | set(EXTRA_CODES))
    version, answers = probe(cuda, codes)

    unknown = None
    for code in codes:
        name, text = answers[code]
        if code in header:
            if name != header[code]:
                die("code %d: header says %s, libcudart names it %s" % (code, header[code], name))
        else:
            if unknown is None:
                unknown = (name, text)
            if (name, text) != unknown:
                die("code %d, outside enum cudaError, got %r, not %r" % (code, (name, text), unknown))
    if unknown is None or unknown[0] != unknown[1]:
        die("unexpected text for unknown codes: %r" % (unknown,))

    wheel = wheel_version(cuda)
    src = []
    w = src.append
    w("// @generated by scripts/gen-cuda-errors.py: do not edit. Regenerate with")
    w("// `python3 scripts/gen-cuda-errors.py` (needs NVIDIA's nvidia-cuda-runtime wheel, gcc, rustfmt).")
    w("//")
    w(
        "// Source: NVIDIA's libcudart.so.13 (nvidia-cuda-runtime %s, cudaRuntimeGetVersion %d):"
        % (wheel or "wheel version unknown", version)
    )
    w("// cudaGetErrorName / cudaGetErrorString of every code in 0..=1100, of every value of")
    w("// `enum cudaError` (driver_types.h) and of %s;" % ", ".join(map(str, EXTRA_CODES)))
    w("// CUresult values from cuda.h.")
    w("")
    w("//! The generated half of [`super`]: one constant per `enum cudaError` value, and what NVIDIA's")
    w("//! libcudart answers for each.")
    w("")
    w("#![allow(non_upper_case_globals)]")
    w("")
    w("use core::ffi::CStr;")
    w("")
    for n, v in errors:
        w("/// `%s`: `%s`." % (n, answers[v][1].replace("`", "'")))
        w("pub const %s: i32 = %d;" % (n, v))
        w("")
    w("/// Every value of `enum cudaError`, ascending.")
    w("pub const ALL_ERRORS: [i32; %d] = [%s];" % (len(errors), ", ".join(n for n, v in sorted(errors, key=lambda e: e[1]))))
    w("")
    w("/// What libcudart's `cudaGetErrorName` and `cudaGetErrorString` both return for a code outside")
    w("/// `enum cudaError`.")
    w("pub(super) const UNRECOGNIZED: &CStr = %s;" % rust_str(unknown[0]))
    w("")
    w("/// `(cudaGetErrorName, cudaGetErrorString)` of a value of `enum cudaError`.")
    w("pub(super) fn lookup(code: i32) -> Option<(&'static CStr, &'static CStr)> {")
    w("    Some(match code {")
    for n, v in sorted(errors, key=lambda e: e[1]):
        w("        %d => (%s, %s)," % (v, rust_str(answers[v][0]), rust_str(answers[v][1])))
    w("        _ => return None,")
    w("    })")
    w("}")
    w("")
    w("/// The `cudaError_t` for a driver `CUresult` of cuda.h: the runtime error with the same number")
    w("/// (CUDA keeps the two enums aligned), or `cudaErrorUnknown` for the few driver errors without")
    w("/// one. `None` for a number cuda.h does not define.")
    w("pub(super) fn from_cu_result(cu: u32) -> Option<i32> {")
    w("    Some(match cu {")
    seen = set()
    for n, v in sorted(cu_results, key=lambda e: e[1]):
        if v in seen:
            continue
        seen.add(v)
        names = " / ".join(m for m, u in cu_results if u == v)
        if v in header and v < 10000:
            w("        %d => %s, // %s" % (v, header[v], names))
        else:
            w("        %d => cudaErrorUnknown, // %s: no runtime counterpart" % (v, names))
    w("        _ => return None,")
    w("    })")
    w("}")
    text = "\n".join(src) + "\n"
    fmt = subprocess.run(
        ["rustfmt", "--edition", "2021", "--config-path", os.path.join(ROOT, "rustfmt.toml")],
        input=text,
        capture_output=True,
        text=True,
    )
    if fmt.returncode != 0:
        die("rustfmt failed:\n" + fmt.stderr)
    return fmt.stdout, len(errors), len(codes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cuda", help="NVIDIA's nvidia/cu13 folder (include/, lib/libcudart.so.13)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the committed table differs")
    args = ap.parse_args()
    cuda = find_cuda(args.cuda)
    text, n_errors, n_codes = generate(cuda)
    old = open(OUT).read() if os.path.exists(OUT) else ""
    rel = os.path.relpath(OUT, ROOT)
    if args.check:
        if old != text:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True), rel, "generated"))
            die("%s is out of date: run scripts/gen-cuda-errors.py" % rel)
        print("%s is up to date (%d errors, %d codes probed, from %s)" % (rel, n_errors, n_codes, cuda))
        return
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote %s: %d errors, %d codes probed, from %s" % (rel, n_errors, n_codes, cuda))


if __name__ == "__main__":
    main()
