#!/usr/bin/env python3
"""Generate docs/COVERAGE.md: which of NVIDIA's libcudart.so.13 exports remora implements and tests.

Inputs:
  - interpose/data/libcudart.so.13.exports  NVIDIA's exports, `name version` per line
                                            (scripts/gen-cudart-exports.sh)
  - LIB                                     our built libcudart.so (its dynamic symbols, readelf)
  - interpose/data/coverage-status.tsv      `symbol<TAB>status<TAB>tests`, status implemented or
                                            not-supported, tests a comma-separated list (kept by
                                            hand by whoever writes the shims)
  - tests/cuda/*.cu                         programs calling a symbol (`\\bname\\s*\\(`); symbols that
                                            nvcc emits calls to (`__cudaRegisterFatBinary`, `_ptsz`
                                            variants) never appear in source: list their tests in
                                            the TSV

Usage:
  scripts/coverage.py LIB            write docs/COVERAGE.md
  scripts/coverage.py --check LIB    exit 1 if docs/COVERAGE.md is not what LIB gives, if LIB lacks
                                     one of NVIDIA's exports (or has it under another version), or
                                     if the status table is incomplete or names unknown symbols

Needs python3 and readelf (binutils).
"""

import argparse
import difflib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTS = "interpose/data/libcudart.so.13.exports"
STATUS = "interpose/data/coverage-status.tsv"
TESTS_DIR = "tests/cuda"
OUT = "docs/COVERAGE.md"
STATUSES = ("implemented", "not-supported")


def read_exports(path):
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                sys.exit("%s:%d: expected `name version`" % (path, n))
            out[parts[0]] = parts[1]
    return out


def read_status(path, problems):
    rows = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#") or (n == 1 and line.startswith("symbol\t")):
                continue
            parts = line.split("\t")
            if len(parts) < 2 or len(parts) > 3:
                problems.append("%s:%d: expected symbol<TAB>status<TAB>tests" % (STATUS, n))
                continue
            sym, status = parts[0].strip(), parts[1].strip()
            tests = [t.strip() for t in (parts[2] if len(parts) > 2 else "").split(",") if t.strip()]
            if status not in STATUSES:
                problems.append("%s:%d: %s: status %r is not one of %s" % (STATUS, n, sym, status, ", ".join(STATUSES)))
            if sym in rows:
                problems.append("%s:%d: %s listed twice" % (STATUS, n, sym))
            rows[sym] = (status, tests)
    return rows


def shim_symbols():
    """Names the shims implement: every `extern "C" fn` in interpose/cudart/src/shim/*.rs."""
    names = set()
    shim = os.path.join(ROOT, "interpose/cudart/src/shim")
    for fn in sorted(os.listdir(shim)):
        if fn.endswith(".rs"):
            with open(os.path.join(shim, fn)) as f:
                text = f.read()
                names.update(re.findall(r'pub (?:unsafe )?extern "C" fn (\w+)', text))
                names.update(re.findall(r'^\s*per_thread!\((\w+)', text, re.M))
    return names


def our_symbols(lib):
    """name -> version string as readelf shows it: 'libcudart.so.13' for name@@libcudart.so.13,
    '@libcudart.so.13' for a non-default version, '' for an unversioned symbol."""
    out = subprocess.run(["readelf", "--dyn-syms", "-W", lib], check=True, capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        t = line.split()
        # Num: Value Size Type Bind Vis Ndx Name
        if len(t) < 8 or not t[0].endswith(":") or t[6] in ("UND", "ABS"):
            continue
        if t[4] not in ("GLOBAL", "WEAK"):
            continue
        name = t[7]
        if "@@" in name:
            name, ver = name.split("@@", 1)
        elif "@" in name:
            name, ver = name.split("@", 1)
            ver = "@" + ver
        else:
            ver = ""
        syms[name] = ver
    return syms


def scan_tests(names):
    """symbol -> sorted list of tests/cuda programs whose source calls it."""
    used = {}
    d = os.path.join(ROOT, TESTS_DIR)
    files = sorted(f for f in os.listdir(d) if f.endswith(".cu")) if os.path.isdir(d) else []
    sources = {}
    for f in files:
        with open(os.path.join(d, f), errors="replace") as fh:
            sources[f] = fh.read()
    for name in names:
        pat = re.compile(r"\b%s\s*\(" % re.escape(name))
        hits = [f for f, text in sources.items() if pat.search(text)]
        if hits:
            used[name] = hits
    return used, len(files)


def render(nvidia, ours, status, used, n_programs):
    rows = []
    totals = {
        "exported": len(nvidia),
        "implemented": 0,
        "tested": 0,
        "not-supported": 0,
        "missing": 0,
        "unlisted": 0,
        "wanted": 0,
    }
    for name in sorted(nvidia):
        st, tests = status.get(name, ("unlisted", []))
        if st == "implemented":
            totals["implemented"] += 1
        elif st == "not-supported":
            totals["not-supported"] += 1
        else:
            totals["unlisted"] += 1
        programs = [f[: -len(".cu")] for f in used.get(name, [])]
        all_tests = list(tests) + [p for p in programs if p not in tests]
        if all_tests and st == "implemented":
            totals["tested"] += 1
        if programs and st != "implemented":
            totals["wanted"] += 1
        if name not in ours:
            here = "**missing**"
            totals["missing"] += 1
        elif ours[name] == nvidia[name]:
            here = "yes"
        else:
            here = "**version `%s`**" % (ours[name] or "none")
            totals["missing"] += 1
        rows.append("| `%s` | %s | %s | %s |" % (name, st, here, ", ".join("`%s`" % t for t in all_tests)))
    extra = sorted(n for n in ours if n not in nvidia)

    out = []
    w = out.append
    w("# libcudart.so.13 coverage")
    w("")
    w("<!-- Generated by scripts/coverage.py: do not edit. Regenerate with")
    w("     `scripts/coverage.py <our built libcudart.so>`; CI runs it with --check. -->")
    w("")
    w(
        "What remora's `libcudart.so.13` does with each of the %d symbols NVIDIA's libcudart.so.13 (13.0.96) "
        "exports. Sources: `%s` (NVIDIA's exports), the dynamic symbols of our built library, `%s` "
        "(status and tests, kept by hand) and the %d programs in `%s/` (named without `.cu` under "
        "tests; a program counts when its source calls the symbol)." % (len(nvidia), EXPORTS, STATUS, n_programs, TESTS_DIR)
    )
    w("")
    w("| | symbols |")
    w("|---|---:|")
    w("| exported by NVIDIA's libcudart.so.13 | %d |" % totals["exported"])
    w("| implemented | %d |" % totals["implemented"])
    w("| tested (implemented, with a test in the status table or a `tests/cuda` program calling it) | %d |" % totals["tested"])
    w("| not supported (answer `cudaErrorNotSupported`) | %d |" % totals["not-supported"])
    w("| called by a `tests/cuda` program but not implemented | %d |" % totals["wanted"])
    if totals["unlisted"]:
        w("| not in the status table | %d |" % totals["unlisted"])
    w("| missing from our library (or under another version) | %d |" % totals["missing"])
    if extra:
        w("| exported by our library only | %d |" % len(extra))
    w("")
    w("## Symbols")
    w("")
    w("| symbol | status | in our library | tests |")
    w("|---|---|---|---|")
    out.extend(rows)
    if extra:
        w("")
        w("## Exported by our library, not by NVIDIA's")
        w("")
        for n in extra:
            w("- `%s`%s" % (n, "" if ours[n] == "libcudart.so.13" else " (version `%s`)" % (ours[n] or "none")))
    return "\n".join(out) + "\n", totals


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("lib", help="our built libcudart.so (e.g. target/release/libcudart.so)")
    ap.add_argument("--check", action="store_true", help="fail if docs/COVERAGE.md is stale or symbols are missing")
    args = ap.parse_args()

    problems = []
    nvidia = read_exports(os.path.join(ROOT, EXPORTS))
    status = read_status(os.path.join(ROOT, STATUS), problems)
    ours = our_symbols(args.lib)
    used, n_programs = scan_tests(nvidia)
    text, totals = render(nvidia, ours, status, used, n_programs)

    for name in sorted(nvidia):
        if name not in status:
            problems.append("%s: no row in %s" % (name, STATUS))
    for name in sorted(status):
        if name not in nvidia:
            problems.append("%s: in %s but not one of NVIDIA's exports" % (name, STATUS))
    missing = [n for n in sorted(nvidia) if ours.get(n) != nvidia[n]]
    shims = shim_symbols()
    for name in sorted(nvidia):
        st = status.get(name, ("", []))[0]
        if (name in shims) != (st == "implemented"):
            problems.append("%s: %s says %r but the shims %s it" % (name, STATUS, st, "implement" if name in shims else "do not implement"))

    path = os.path.join(ROOT, OUT)
    summary = "%d exported, %d implemented, %d tested, %d not supported, %d missing" % (
        totals["exported"],
        totals["implemented"],
        totals["tested"],
        totals["not-supported"],
        totals["missing"],
    )
    if not args.check:
        with open(path, "w") as f:
            f.write(text)
        print("wrote %s: %s" % (OUT, summary))
        for p in problems:
            print("warning: " + p, file=sys.stderr)
        for n in missing:
            print("warning: %s: %s" % (n, "missing from " + args.lib if n not in ours else "version " + repr(ours[n])), file=sys.stderr)
        return

    failed = False
    old = open(path).read() if os.path.exists(path) else ""
    if old != text:
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True), OUT, "generated"))
        print("coverage: %s is out of date: run scripts/coverage.py %s" % (OUT, args.lib), file=sys.stderr)
        failed = True
    if missing:
        print("coverage: %d of NVIDIA's exports are missing from %s or carry another version:" % (len(missing), args.lib), file=sys.stderr)
        for n in missing:
            print("  %s%s" % (n, "" if n not in ours else " (version %r)" % ours[n]), file=sys.stderr)
        failed = True
    if problems:
        print("coverage: %s has problems:" % STATUS, file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        failed = True
    if failed:
        sys.exit(1)
    print("%s is up to date: %s" % (OUT, summary))


if __name__ == "__main__":
    main()
