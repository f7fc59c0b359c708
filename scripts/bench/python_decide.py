"""policy.decide from Python against the engine's own decision time on the same rows in memory
(examples/decide_time.rs), alternating, best of each: issue 14's <= 1.1x.

    python scripts/bench/python_decide.py DECIDE_TIME_BIN POLICY FILE...
"""

import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

import corpusgate

exe, policy_path, *files = sys.argv[1:]
policy = corpusgate.Policy.from_file(policy_path)
table = pa.concat_tables(pq.read_table(f, columns=policy.columns) for f in files).combine_chunks()
rust = py = float("inf")
for _ in range(3):
    rows, secs = subprocess.run([exe, policy_path, *files], capture_output=True, text=True,
                                check=True).stdout.split()
    rust = min(rust, float(secs))
    for _ in range(5):
        t = time.perf_counter()
        d = policy.decide(table)
        py = min(py, time.perf_counter() - t)
    assert d.num_rows == table.num_rows == int(rows)
print(f"decide: {table.num_rows} rows, Python {py:.4f} s, engine {rust:.4f} s, ratio {py / rust:.2f}")
