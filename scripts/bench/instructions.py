"""Instruction counts of a run under `valgrind --tool=cachegrind --cache-sim=no`, split into the
zstd codec and everything else, for scripts/bench.sh's instruction comparison with the zstd
floor (the CPU seconds of these shared machines vary by more than the targets' margins between
two runs of one command; the instructions a run executes do not).

    instructions.py summary FILE       -> "TOTAL CODEC SHA256" (instructions; SHA256: in
                                          sha2's block function, which valgrind runs in
                                          software, for it hides the CPU's SHA extensions)
    instructions.py top FILE N [BASE]  -> the N functions outside the codec with the most
                                          instructions, "name: count (share of the run)";
                                          with BASE (a run on fewer files), FILE's minus BASE's

The codec is every function of libzstd: names that start ZSTD_, ZSTDMT_, HUF_, FSE_ or HIST_,
and code without a symbol (`???`): libzstd's hand-written assembly Huffman decoder has none. In
a corpusgate run, `???` is as large as in a floor run that only decompresses the same input (to
within 0.01 %), so nothing of corpusgate's hides in it.
"""

import re
import sys
from collections import Counter

# libzstd's function names (cpu_share.py takes them from here too).
LIBZSTD = ("ZSTD_", "ZSTDMT_", "HUF_", "FSE_", "HIST_")
CODEC = re.compile(r"^(" + "|".join(LIBZSTD) + r"|\?\?\?$)")


def per_function(path):
    """Instructions per function name (summed over files) of a cachegrind output file."""
    counts = Counter()
    fn = "???"
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                fn = line[3:].rstrip("\n")
            elif line[:1].isdigit():
                parts = line.split()
                if len(parts) >= 2:
                    counts[fn] += int(parts[1])
            elif line.startswith("fl="):
                fn = "???"
    return counts


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    counts = per_function(path)
    total = sum(counts.values())
    if cmd == "summary":
        codec = sum(n for name, n in counts.items() if CODEC.match(name))
        sha = sum(n for name, n in counts.items() if name.startswith("sha2::sha256::"))
        print(total, codec, sha)
    elif cmd == "top":
        if len(sys.argv) > 4:
            base = per_function(sys.argv[4])
            counts = Counter({k: counts[k] - base.get(k, 0) for k in counts})
            total = sum(counts.values())
        rest = Counter({k: v for k, v in counts.items() if not CODEC.match(k)})
        print(
            "; ".join(
                f"{name[:80]}: {n / 1e6:.0f} M ({100 * n / total:.2f} %)"
                for name, n in rest.most_common(int(sys.argv[3]))
            )
        )
    else:
        sys.exit(f"instructions.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
