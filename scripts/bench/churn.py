"""A night's churn for the nightly benchmark: copy a consent snapshot with the consent of
PER_MILLION members per million flipped (opt_out <-> opt_in on every row of each), chosen at
random with SEED among the members it holds.

    python churn.py IN.parquet OUT.parquet PER_MILLION SEED
"""

import random
import sys

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def main() -> None:
    src, dst, per_million, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    t = pq.read_table(src)
    members = pc.unique(t["member_id"]).drop_null().to_pylist()
    k = max(1, round(len(members) * per_million / 1_000_000))
    chosen = pa.array(sorted(random.Random(seed).sample(members, k)), type=t["member_id"].type)
    hit = pc.is_in(t["member_id"], value_set=chosen)
    consent = t["genai_consent"]
    denied = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(consent)), value_set=pa.array(["opt_out", "no"]))
    flipped = pc.if_else(denied, pa.scalar("opt_in"), pa.scalar("opt_out"))
    new = pc.if_else(pc.fill_null(hit, False), flipped, consent)
    t = t.set_column(t.schema.get_field_index("genai_consent"), "genai_consent", new.cast(consent.type))
    pq.write_table(t, dst)
    print(k)


if __name__ == "__main__":
    main()
