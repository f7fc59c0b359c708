#!/usr/bin/env python3
"""Lower bounds for the benchmark job, measured with pyarrow (and zstandard).

    floors.py decode IN_GLOB
    floors.py decode-compress IN_GLOB [--level 3]

decode: a pyarrow.dataset scan of every file with all columns and use_threads=True, consuming
each record batch (row count and Arrow buffer bytes). pyarrow decodes every page of every column
chunk into Arrow arrays (no lazy or late materialisation), so this is "decompress and decode the
whole input", streamed, on all cores. It does not write anything.

decode-compress: the same scan, plus for each batch the kept rows are computed with policy.py
(per distinct country/consent spelling, then pyarrow.compute over the batch), the kept `text`
values are taken, and their bytes are zstd-compressed at --level in 1 MiB pieces (about a Parquet
page), on a thread pool of one thread per core (python-zstandard releases the GIL; without it,
pyarrow's codec is used on one thread). This is roughly the least a tool that decodes everything
must do to write the kept text at that level; it skips the other output columns, encoding, and
writing. corpusgate can beat it by not decoding the excluded rows' text at all.

Timing inside the process (after imports) goes to stderr as `floors: ... s`; bench.sh measures
the whole process with /usr/bin/time.
"""

import argparse
import glob
import os
import pathlib
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import policy  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402

try:
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None

PIECE = 1 << 20


def kept_mask(batch, cache):
    """Boolean array: rows the policy keeps (rule `allowed`)."""
    country = batch.column("country")
    consent = batch.column("genai_consent")
    # Decide per (country, consent) spelling pair: few distinct values, so cheap.
    pair = pc.binary_join_element_wise(
        pc.fill_null(country, "\x00null"), pc.fill_null(consent, "\x00null"), "\x01"
    )
    uniq = pc.unique(pair)
    keep = []
    for p in uniq.to_pylist():
        if p not in cache:
            c, s = p.split("\x01")
            c = None if c == "\x00null" else c
            s = None if s == "\x00null" else s
            cache[p] = policy.decide(c, s)[0] == policy.KEEP_RULE
        keep.append(cache[p])
    idx = pc.index_in(pair, value_set=uniq)
    return pc.take(pa.array(keep, pa.bool_()), idx)


def text_bytes(arr):
    """The value bytes of a utf8/large_utf8 array (contiguous after a take)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type not in (pa.string(), pa.large_string()):
        arr = arr.cast(pa.string())
    offs = arr.buffers()[1]
    data = arr.buffers()[2]
    if data is None or len(arr) == 0:
        return pa.py_buffer(b"")
    width = 8 if arr.type == pa.large_string() else 4
    fmt = "<q" if width == 8 else "<i"
    start = struct.unpack_from(fmt, offs, arr.offset * width)[0]
    end = struct.unpack_from(fmt, offs, (arr.offset + len(arr)) * width)[0]
    return data.slice(start, end - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mode", choices=("decode", "decode-compress"))
    ap.add_argument("in_glob")
    ap.add_argument("--level", type=int, default=3)
    a = ap.parse_args()

    files = sorted(glob.glob(a.in_glob, recursive=True))
    if not files:
        sys.exit(f"floors: no files match {a.in_glob}")
    t0 = time.monotonic()
    dataset = ds.dataset(files, format="parquet")
    rows = arrow_bytes = kept = text_in = text_out = 0
    cache = {}
    nthreads = os.cpu_count() or 1
    pool = ThreadPoolExecutor(nthreads) if zstandard else None
    futures = []

    def compress(buf):
        if zstandard is not None:
            return len(zstandard.ZstdCompressor(level=a.level).compress(buf))
        return pa.Codec("zstd", compression_level=a.level).compress(buf).size

    for batch in dataset.to_batches(use_threads=True):
        rows += batch.num_rows
        arrow_bytes += batch.nbytes
        if a.mode == "decode-compress":
            mask = kept_mask(batch, cache)
            text = pc.filter(batch.column("text"), mask)
            kept += len(text)
            buf = text_bytes(text)
            text_in += buf.size
            for off in range(0, buf.size, PIECE):
                piece = memoryview(buf.slice(off, min(PIECE, buf.size - off)))
                if pool:
                    futures.append(pool.submit(compress, piece))
                else:
                    text_out += compress(piece)
            # Keep the number of pieces in flight bounded (and the memory with it).
            while len(futures) > 4 * nthreads:
                text_out += futures.pop(0).result()
    for f in futures:
        text_out += f.result()
    dt = time.monotonic() - t0
    msg = f"floors: {a.mode} {len(files)} files, {rows:,} rows, {arrow_bytes / 2**20:,.0f} MiB as Arrow"
    if a.mode == "decode-compress":
        how = f"zstandard on {nthreads} threads" if pool else "pyarrow codec on 1 thread"
        msg += (
            f"; kept {kept:,} rows, text {text_in / 2**20:,.1f} MiB -> {text_out / 2**20:,.1f} MiB "
            f"at zstd {a.level} ({how})"
        )
    print(f"{msg}: {dt:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
