"""CPU samples of one corpusgate run under `perf record -e cpu-clock`, split into the zstd codec
and everything else, for scripts/bench.sh's within-run comparison with the zstd floor.

    cpu_share.py PERF_DATA BINARY  -> "TOTAL CODEC KERNEL" (samples)

Why: the floor and the job run one after the other, and on these shared machines the CPU second
of one run buys a different number of instructions from the next (per-round ratios of one
invocation ran from 1.07 to 1.21). Samples of one run all see the same machine: the run's
samples over its codec samples is its CPU over the CPU its codec calls took, in that run.

The codec is what the floor times: every function of libzstd (the names instructions.LIBZSTD
lists, an assembly label's leading underscore aside). A sample perf cannot name (libzstd's
hand-written assembly has labels but no sized symbols) is given to the symbol of BINARY at or
below its address (`nm -n`).
KERNEL: samples in the kernel (reading input, writing output, page faults); they count as
outside the codec, although the floor's decompression time includes its reads.
"""

import bisect
import os
import re
import subprocess
import sys

from instructions import LIBZSTD

CODEC = re.compile(r"^_?(" + "|".join(LIBZSTD) + ")")
LINE = re.compile(r"^\s+[\d.]+%\s+(\d+)\s+(\S+)\s+\[(.)\]\s+(\S+)")


def symbols(binary):
    """(addresses, names) of BINARY's code symbols, in address order."""
    out = subprocess.run(["nm", "-n", binary], capture_output=True, text=True, check=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def main():
    data, binary = sys.argv[1], sys.argv[2]
    report = subprocess.run(
        ["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol", "-n", "--stdio"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    addrs, names = symbols(binary)
    total = codec = kernel = 0
    for line in report.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        n, dso, kind, sym = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        total += n
        if kind == "k":
            kernel += n
            continue
        if sym.startswith("0x") and dso == os.path.basename(binary):
            i = bisect.bisect_right(addrs, int(sym, 16)) - 1
            sym = names[i] if i >= 0 else sym
        if CODEC.match(sym):
            codec += n
    if total == 0 or codec == 0:
        sys.exit(f"cpu_share.py: {data} holds no samples of the codec")
    print(total, codec, kernel)


if __name__ == "__main__":
    main()
