"""Whether a --reuse output holds what a fresh run's holds: the same files; the recorded decisions
(_state/decisions/) byte for byte; data files and manifests byte for byte or, where --reuse spliced
PREV_OUT's pages (other page boundaries, so other bytes), the same rows, values, order, schema,
metadata and row groups.

    python same_output.py REUSED FRESH     # exit 0 and a one-line summary, or exit 1 and why
"""
import filecmp
import os
import sys

import pyarrow.parquet as pq


def main(reused, fresh):
    identical = spliced = 0
    for sub in ("data", "excluded", "_state/decisions"):
        if sub.startswith("_state") and not any(os.path.isdir(os.path.join(d, sub)) for d in (reused, fresh)):
            continue
        a, b = (sorted(os.listdir(os.path.join(d, sub))) for d in (reused, fresh))
        if a != b:
            return f"{sub}/ holds other files: {sorted(set(a) ^ set(b))}"
        for name in a:
            x, y = os.path.join(reused, sub, name), os.path.join(fresh, sub, name)
            if filecmp.cmp(x, y, shallow=False):
                identical += 1
                continue
            if sub.startswith("_state"):
                return f"{sub}/{name} differs"
            px, py = pq.ParquetFile(x), pq.ParquetFile(y)
            if px.schema_arrow != py.schema_arrow or px.metadata.metadata != py.metadata.metadata:
                return f"{sub}/{name}: schema or metadata differ"
            rows = lambda p: [p.metadata.row_group(i).num_rows for i in range(p.metadata.num_row_groups)]
            if rows(px) != rows(py):
                return f"{sub}/{name}: row groups differ"
            if not px.read().equals(py.read()):
                return f"{sub}/{name}: rows or values differ"
            spliced += 1
    print(f"{identical} files byte-identical, {spliced} spliced (data files or manifests) with the same rows")
    return None


if __name__ == "__main__":
    why = main(sys.argv[1], sys.argv[2])
    if why:
        print(why, file=sys.stderr)
        sys.exit(1)
