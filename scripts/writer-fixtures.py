#!/usr/bin/env python3
"""Write small Parquet fixtures with the writers corpusgate's users use.

Usage: writer-fixtures.py OUT_DIR   (normally run through scripts/writer-fixtures.sh)

Every corpus fixture has the columns and types of sample-data/corpus/part-00000.parquet, so
`corpusgate filter --policy configs/genai-uk-eea-ch-pause.yaml` can decide it. Snapshot and
user-list fixtures follow sample-data/members.parquet and the one-column user-list format.

Everything is deterministic: values come from fixed seeds and fixed lists. Each fixture is written
twice (the second copy to a scratch directory) and the two copies are compared byte for byte; the
result goes into the README's "same bytes" column. Each file is then read back in full with both
pyarrow and DuckDB, and the row count and the set of ids are asserted.

Spark fixtures are made only when pyspark imports and a local[1] session starts (it needs Java).
When Spark is not available, existing spark-*.parquet files are left in place and still described.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

UTC = dt.timezone.utc

# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

CORPUS_SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.int64(), nullable=False),
        pa.field("member_id", pa.int64()),
        pa.field("country", pa.string()),
        pa.field("genai_consent", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("visibility", pa.string()),
        pa.field("author_age", pa.int32()),
        pa.field("lang", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
    ]
)

# The same, but created_at may be null (the INT96 fixtures hold null timestamps).
CORPUS_SCHEMA_NULLABLE_TS = CORPUS_SCHEMA.set(
    CORPUS_SCHEMA.get_field_index("created_at"), pa.field("created_at", pa.timestamp("us", tz="UTC"))
)

MEMBERS_SCHEMA = pa.schema(
    [
        pa.field("member_id", pa.int64(), nullable=False),
        pa.field("country", pa.string()),
        pa.field("genai_consent", pa.string()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("objected_at", pa.timestamp("us", tz="UTC")),
    ]
)

USERLIST_SCHEMA = pa.schema([pa.field("member_id", pa.int64())])

# Country values and how configs/genai-uk-eea-ch-pause.yaml classes them (PAUSED = GB, EEA, CH).
# Lower case and padded values are there on purpose: the policy trims and ignores case.
COUNTRY_CLASS = {
    "GB": "paused",
    "DE": "paused",
    "FR": "paused",
    "ch": "paused",
    "US": "other",
    " us": "other",
    "JP": "other",
    "ZZ": "unknown",  # user-assigned ISO code: not a known country
    None: "unknown",
}
COUNTRIES = ["GB", "US", "DE", "JP", "ZZ", "FR", None, "US", "ch", " us", "JP"]
CONSENTS = ["opt_in", "opt_out", None]  # 11 and 3 are coprime: every pair occurs
VISIBILITY = ["public", "connections", "private", None]
LANGS = ["en", "de", "fr", "ja"]
WORDS = (
    "the data model team network hiring privacy growth project customer launch excited "
    "training career product announce support update"
).split()

BASE_TIME = dt.datetime(2024, 1, 1, tzinfo=UTC)
MEMBER_BASE = 1_000_000
N_MEMBERS = 50


def corpus_rows(n: int, seed: int, post_base: int, *, null_created_at: bool = False) -> list[dict]:
    """n deterministic corpus rows; post ids post_base .. post_base+n-1."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            {
                "post_id": post_base + i,
                "member_id": None if i % 17 == 5 else MEMBER_BASE + (i * 13 + seed) % N_MEMBERS,
                "country": COUNTRIES[i % len(COUNTRIES)],
                "genai_consent": CONSENTS[i % len(CONSENTS)],
                "created_at": None
                if null_created_at and i % 11 == 3
                else BASE_TIME + dt.timedelta(seconds=i * 3607 + rng.randrange(3600)),
                "visibility": VISIBILITY[rng.randrange(len(VISIBILITY))],
                "author_age": None if i % 13 == 7 else 16 + rng.randrange(65),
                "lang": LANGS[rng.randrange(len(LANGS))],
                "text": " ".join(rng.choice(WORDS) for _ in range(3 + rng.randrange(6))),
            }
        )
    return rows


def policy_outcome(rows: list[dict]) -> tuple[int, int]:
    """(included, excluded) under configs/genai-uk-eea-ch-pause.yaml, for the values used here."""
    inc = exc = 0
    for r in rows:
        cls = COUNTRY_CLASS[r["country"]]
        if cls in ("paused", "unknown") or r["genai_consent"] == "opt_out":
            exc += 1
        else:
            inc += 1
    return inc, exc


def corpus_table(rows: list[dict], schema: pa.Schema = CORPUS_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def member_rows() -> list[dict]:
    """A consent snapshot: one row per member, plus later updates for some (newest wins)."""
    rng = random.Random(7)
    rows = []
    for k in range(N_MEMBERS):
        rows.append(
            {
                "member_id": MEMBER_BASE + k,
                "country": COUNTRIES[(k * 5) % len(COUNTRIES)],
                "genai_consent": CONSENTS[k % len(CONSENTS)],
                "updated_at": BASE_TIME + dt.timedelta(days=k, seconds=rng.randrange(86400)),
                "objected_at": BASE_TIME + dt.timedelta(days=90 + k) if k % 9 == 4 else None,
            }
        )
    for k in range(0, N_MEMBERS, 6):  # newer rows for every 6th member: country and consent change
        rows.append(
            {
                "member_id": MEMBER_BASE + k,
                "country": "US" if k % 12 else "GB",
                "genai_consent": "opt_out" if k % 4 else "opt_in",
                "updated_at": BASE_TIME + dt.timedelta(days=400 + k),
                "objected_at": None,
            }
        )
    return rows


USERLIST_IDS = [MEMBER_BASE + k for k in (3, 10, 11, 24, 31, 42, 49)]

# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


def pa_write_groups(path: Path, schema: pa.Schema, groups: list[pa.Table], **kw) -> None:
    """One ParquetWriter.write_table call per table: each call becomes its own row group
    (an empty table becomes a row group of 0 rows)."""
    with pq.ParquetWriter(path, schema, **kw) as w:
        for g in groups:
            w.write_table(g)


def duckdb_copy(path: Path, table: pa.Table | None, batch_rows: int, options: str, query: str = "") -> None:
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        con.execute("SET preserve_insertion_order = true")
        if table is not None:
            # DuckDB closes a row group only at a chunk boundary (2048 rows by default); feeding it
            # Arrow batches of `batch_rows` rows makes each batch its own chunk.
            con.register("src", pa.Table.from_batches(table.to_batches(max_chunksize=batch_rows), schema=table.schema))
        q = query or "SELECT * FROM src"
        con.execute(f"COPY ({q}) TO '{path}' ({options})")
    finally:
        con.close()


SPARK = None
SPARK_SKIP_REASON = ""


def spark_session():
    global SPARK, SPARK_SKIP_REASON
    if SPARK is not None or SPARK_SKIP_REASON:
        return SPARK
    if os.environ.get("WRITER_FIXTURES_SPARK", "1") == "0":
        SPARK_SKIP_REASON = "WRITER_FIXTURES_SPARK=0"
        return None
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        SPARK_SKIP_REASON = f"pyspark not importable ({e})"
        return None
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # bind and advertise loopback only
    try:
        SPARK = (
            SparkSession.builder.master("local[1]")
            .appName("corpusgate-writer-fixtures")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "1")
            .config("spark.sql.parquet.outputTimestampType", "INT96")
            .getOrCreate()
        )
        SPARK.sparkContext.setLogLevel("ERROR")
    except Exception as e:  # no Java, or the JVM would not start
        SPARK_SKIP_REASON = f"Spark session did not start ({type(e).__name__}: {e})"
        SPARK = None
    return SPARK


def spark_corpus_schema():
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("post_id", T.LongType(), False),
            T.StructField("member_id", T.LongType(), True),
            T.StructField("country", T.StringType(), True),
            T.StructField("genai_consent", T.StringType(), True),
            T.StructField("created_at", T.TimestampType(), True),
            T.StructField("visibility", T.StringType(), True),
            T.StructField("author_age", T.IntegerType(), True),
            T.StructField("lang", T.StringType(), False),
            T.StructField("text", T.StringType(), False),
        ]
    )


def spark_write_single(path: Path, rows: list[dict]) -> None:
    """df.coalesce(1).write.parquet(DIR), then copy the one part file (if any) to `path`."""
    spark = spark_session()
    schema = spark_corpus_schema()
    df = spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in rows], schema)
    with tempfile.TemporaryDirectory(prefix="spark-fixture-") as tmp:
        out = Path(tmp) / "out"
        df.coalesce(1).write.mode("overwrite").parquet(str(out))
        parts = sorted(out.glob("part-*.parquet"))
        print(f"  Spark wrote {out.name}/: {sorted(p.name for p in out.iterdir())}")
        if len(parts) != 1:
            listing = sorted(p.name for p in out.iterdir())
            raise NoOutput(f"Spark wrote {len(parts)} part files: {listing}")
        shutil.copyfile(parts[0], path)


class NoOutput(Exception):
    """The writer produced no single Parquet file for this fixture."""


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@dataclass
class Fixture:
    name: str
    writer: str  # pyarrow | duckdb | polars | spark
    kind: str  # corpus | snapshot | userlist
    how: str  # how it was written, for the README
    write: Callable[[Path], None]
    rows: list[dict]  # the rows that must read back
    key: str = "post_id"
    notes: list[str] = field(default_factory=list)


def fixtures() -> list[Fixture]:
    fx: list[Fixture] = []

    def add(name, writer, how, write, rows, kind="corpus", key="post_id"):
        fx.append(Fixture(name, writer, kind, how, write, rows, key))

    # ---- pyarrow -------------------------------------------------------------------------
    add(
        "pyarrow-empty-one-zero-row-group.parquet",
        "pyarrow",
        "`pq.write_table` of a zero-row table",
        lambda p: pq.write_table(CORPUS_SCHEMA.empty_table(), p),
        [],
    )
    add(
        "pyarrow-no-row-groups.parquet",
        "pyarrow",
        "`pq.ParquetWriter` opened and closed without a write",
        lambda p: pa_write_groups(p, CORPUS_SCHEMA, []),
        [],
    )
    r_between = corpus_rows(60, seed=3, post_base=20_003_000)
    add(
        "pyarrow-zero-row-group-between.parquet",
        "pyarrow",
        "`ParquetWriter.write_table` of 30 rows, 0 rows, 30 rows",
        lambda p: pa_write_groups(
            p,
            CORPUS_SCHEMA,
            [corpus_table(r_between[:30]), CORPUS_SCHEMA.empty_table(), corpus_table(r_between[30:])],
        ),
        r_between,
    )
    r_int96 = corpus_rows(160, seed=4, post_base=20_004_000, null_created_at=True)
    add(
        "pyarrow-int96.parquet",
        "pyarrow",
        "`use_deprecated_int96_timestamps=True`, `row_group_size=40`; created_at nullable, with nulls",
        lambda p: pq.write_table(
            corpus_table(r_int96, CORPUS_SCHEMA_NULLABLE_TS),
            p,
            row_group_size=40,
            use_deprecated_int96_timestamps=True,
        ),
        r_int96,
    )
    r_v2 = corpus_rows(120, seed=5, post_base=20_005_000)
    add(
        "pyarrow-v2-pages.parquet",
        "pyarrow",
        "`data_page_version='2.0'`, `row_group_size=50`",
        lambda p: pq.write_table(corpus_table(r_v2), p, data_page_version="2.0", row_group_size=50),
        r_v2,
    )
    r_crc = corpus_rows(80, seed=9, post_base=20_009_000)
    add(
        "pyarrow-page-checksums.parquet",
        "pyarrow",
        "`write_page_checksum=True`, `row_group_size=40` (every page header carries a CRC-32)",
        lambda p: pq.write_table(corpus_table(r_crc), p, write_page_checksum=True, row_group_size=40),
        r_crc,
    )
    r_dict = corpus_rows(200, seed=6, post_base=20_006_000)
    add(
        "pyarrow-dict-and-plain.parquet",
        "pyarrow",
        "defaults plus `compression='zstd'`, `row_group_size=64`, `dictionary_pagesize_limit=256`, "
        "`data_page_size=512`, `write_batch_size=16` (so high-cardinality columns fall back from dictionary to PLAIN "
        "within a column chunk, as big files do with the 1 MiB default)",
        lambda p: pq.write_table(
            corpus_table(r_dict),
            p,
            compression="zstd",
            row_group_size=64,
            dictionary_pagesize_limit=256,
            data_page_size=512,
            write_batch_size=16,
        ),
        r_dict,
    )
    r_nested = corpus_rows(80, seed=8, post_base=20_008_000)
    nested_schema = CORPUS_SCHEMA.append(pa.field("tags", pa.list_(pa.string()))).append(
        pa.field(
            "payload",
            pa.struct([("source", pa.string()), ("score", pa.float64()), ("mentions", pa.list_(pa.int64()))]),
        )
    )
    for i, r in enumerate(r_nested):
        r["tags"] = None if i % 7 == 2 else [WORDS[(i + j) % len(WORDS)] for j in range(i % 4)]
        r["payload"] = (
            None
            if i % 9 == 4
            else {
                "source": ["web", "ios", "android", None][i % 4],
                "score": None if i % 5 == 1 else round(i * 0.125, 3),
                "mentions": [MEMBER_BASE + (i * 3 + j) % N_MEMBERS for j in range(i % 3)],
            }
        )
    add(
        "pyarrow-nested.parquet",
        "pyarrow",
        "`row_group_size=40`; extra `tags: list<string>` and "
        "`payload: struct<source: string, score: double, mentions: list<int64>>`",
        lambda p: pq.write_table(pa.Table.from_pylist(r_nested, schema=nested_schema), p, row_group_size=40),
        r_nested,
    )

    # ---- DuckDB --------------------------------------------------------------------------
    r_duck = corpus_rows(160, seed=10, post_base=20_010_000)
    add(
        "duckdb-basic.parquet",
        "duckdb",
        "`COPY (SELECT * FROM src) TO ... (FORMAT parquet, ROW_GROUP_SIZE 40)`, src an Arrow table "
        "in 40-row batches, `threads=1`",
        lambda p: duckdb_copy(p, corpus_table(r_duck), 40, "FORMAT parquet, ROW_GROUP_SIZE 40"),
        r_duck,
    )
    add(
        "duckdb-empty.parquet",
        "duckdb",
        "`COPY (SELECT * FROM src WHERE false) TO ... (FORMAT parquet)`",
        lambda p: duckdb_copy(p, corpus_table([]), 40, "FORMAT parquet", "SELECT * FROM src WHERE false"),
        [],
    )

    # ---- Polars --------------------------------------------------------------------------
    r_polars = corpus_rows(150, seed=12, post_base=20_012_000)
    add(
        "polars-basic.parquet",
        "polars",
        "`pl.from_arrow(t).write_parquet(row_group_size=40, statistics=True)`",
        lambda p: pl.from_arrow(corpus_table(r_polars)).write_parquet(p, row_group_size=40, statistics=True),
        r_polars,
    )
    add(
        "polars-empty.parquet",
        "polars",
        "`pl.from_arrow(zero-row table).write_parquet(statistics=True)`",
        lambda p: pl.from_arrow(CORPUS_SCHEMA.empty_table()).write_parquet(p, statistics=True),
        [],
    )

    # ---- Spark ---------------------------------------------------------------------------
    r_spark = corpus_rows(120, seed=14, post_base=20_014_000, null_created_at=True)
    add(
        "spark-int96.parquet",
        "spark",
        "`spark.sql.parquet.outputTimestampType=INT96`, `df.coalesce(1).write.parquet(DIR)`, "
        "the one part file copied out; created_at with nulls",
        lambda p: spark_write_single(p, r_spark),
        r_spark,
    )
    add(
        "spark-empty.parquet",
        "spark",
        "`createDataFrame([], schema).coalesce(1).write.parquet(DIR)`, the one part file copied out",
        lambda p: spark_write_single(p, []),
        [],
    )

    # ---- consent snapshot and user lists -------------------------------------------------
    r_members = member_rows()
    half = len(r_members) // 2
    add(
        "snapshot-empty-row-group.parquet",
        "pyarrow",
        f"members snapshot; `ParquetWriter.write_table` of {half}, 0 and "
        f"{len(r_members) - half} rows (duplicate member_ids: newer rows in the last group)",
        lambda p: pa_write_groups(
            p,
            MEMBERS_SCHEMA,
            [
                pa.Table.from_pylist(r_members[:half], schema=MEMBERS_SCHEMA),
                MEMBERS_SCHEMA.empty_table(),
                pa.Table.from_pylist(r_members[half:], schema=MEMBERS_SCHEMA),
            ],
        ),
        r_members,
        kind="snapshot",
        key="member_id",
    )
    add(
        "userlist-empty.parquet",
        "pyarrow",
        "one `member_id: int64` column; `pq.write_table` of a zero-row table",
        lambda p: pq.write_table(USERLIST_SCHEMA.empty_table(), p),
        [],
        kind="userlist",
        key="member_id",
    )
    ul = [{"member_id": m} for m in USERLIST_IDS]
    add(
        "userlist-zero-row-group-between.parquet",
        "pyarrow",
        "one `member_id: int64` column; `ParquetWriter.write_table` of 4, 0 and 3 rows",
        lambda p: pa_write_groups(
            p,
            USERLIST_SCHEMA,
            [
                pa.Table.from_pylist(ul[:4], schema=USERLIST_SCHEMA),
                USERLIST_SCHEMA.empty_table(),
                pa.Table.from_pylist(ul[4:], schema=USERLIST_SCHEMA),
            ],
        ),
        ul,
        kind="userlist",
        key="member_id",
    )
    return fx


# --------------------------------------------------------------------------------------------
# Inspection: page headers (Thrift compact protocol), schema, read-back
# --------------------------------------------------------------------------------------------

PAGE_TYPES = {0: "DATA_PAGE", 1: "INDEX_PAGE", 2: "DICTIONARY_PAGE", 3: "DATA_PAGE_V2"}
ENCODINGS = {
    0: "PLAIN", 2: "PLAIN_DICTIONARY", 3: "RLE", 4: "BIT_PACKED", 5: "DELTA_BINARY_PACKED",
    6: "DELTA_LENGTH_BYTE_ARRAY", 7: "DELTA_BYTE_ARRAY", 8: "RLE_DICTIONARY", 9: "BYTE_STREAM_SPLIT",
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _value(buf: bytes, pos: int, t: int):
    if t in (1, 2):
        return t == 1, pos
    if t == 3:
        return buf[pos], pos + 1
    if t in (4, 5, 6):
        v, pos = _varint(buf, pos)
        return _zigzag(v), pos
    if t == 7:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if t == 8:
        n, pos = _varint(buf, pos)
        return bytes(buf[pos : pos + n]), pos + n
    if t in (9, 10):
        h = buf[pos]
        pos += 1
        n, et = h >> 4, h & 0x0F
        if n == 15:
            n, pos = _varint(buf, pos)
        out = []
        for _ in range(n):
            if et in (1, 2):
                out.append(buf[pos] == 1)
                pos += 1
            else:
                v, pos = _value(buf, pos, et)
                out.append(v)
        return out, pos
    if t == 11:
        n, pos = _varint(buf, pos)
        if n == 0:
            return {}, pos
        h = buf[pos]
        pos += 1
        out = {}
        for _ in range(n):
            k, pos = _value(buf, pos, h >> 4)
            v, pos = _value(buf, pos, h & 0x0F)
            out[k] = v
        return out, pos
    if t == 12:
        return _struct(buf, pos)
    raise ValueError(f"thrift compact type {t}")


def _struct(buf: bytes, pos: int) -> tuple[dict, int]:
    fields, last = {}, 0
    while True:
        h = buf[pos]
        pos += 1
        if h == 0:
            return fields, pos
        t, delta = h & 0x0F, h >> 4
        if delta:
            fid = last + delta
        else:
            v, pos = _varint(buf, pos)
            fid = _zigzag(v)
        fields[fid], pos = _value(buf, pos, t)
        last = fid


def page_types(path: Path) -> tuple[dict[str, int], list[str]]:
    """Count the pages of every column chunk by type, walking the page headers.
    Also returns notes on odd column-chunk metadata (data_page_offset 0, chunks without data pages)."""
    data = path.read_bytes()
    md = pq.ParquetFile(path).metadata
    counts: dict[str, int] = {}
    odd: dict[str, set[int]] = {}
    fallback: set[str] = set()
    page_encodings: set[str] = set()
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        for c in range(rg.num_columns):
            cc = rg.column(c)
            start = cc.data_page_offset
            if cc.has_dictionary_page and cc.dictionary_page_offset:
                # a chunk with no data page may say data_page_offset 0 (pyarrow, empty row group)
                start = cc.dictionary_page_offset if start == 0 else min(start, cc.dictionary_page_offset)
            if cc.data_page_offset == 0:
                odd.setdefault("data_page_offset = 0", set()).add(g)
            pos, end = start, start + cc.total_compressed_size
            data_pages = 0
            chunk_encodings = set()
            while pos < end:
                hdr, body = _struct(data, pos)
                name = PAGE_TYPES.get(hdr[1], f"type{hdr[1]}")
                counts[name] = counts.get(name, 0) + 1
                if name in ("DATA_PAGE", "DATA_PAGE_V2"):
                    data_pages += 1
                    enc = hdr[5][2] if name == "DATA_PAGE" else hdr[8][4]
                    chunk_encodings.add(ENCODINGS.get(enc, str(enc)))
                pos = body + hdr[3]
            dict_enc = chunk_encodings & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
            if dict_enc and chunk_encodings - dict_enc:
                fallback.add(cc.path_in_schema)
            page_encodings.update(chunk_encodings)
            if pos != end:
                odd.setdefault(f"pages overrun total_compressed_size by {pos - end}", set()).add(g)
            if data_pages == 0:
                odd.setdefault("column chunks with no data page", set()).add(g)
    notes = [f"{what} in row group(s) {', '.join(map(str, sorted(gs)))}" for what, gs in odd.items()]
    if page_encodings:
        notes.append("data page encodings: " + ", ".join(sorted(page_encodings)))
    if fallback:
        notes.append("dictionary then PLAIN data pages in one chunk (fallback): " + ", ".join(sorted(fallback)))
    return counts, notes


def data_page_version(counts: dict[str, int]) -> str:
    v = [name for key, name in (("DATA_PAGE", "v1"), ("DATA_PAGE_V2", "v2")) if counts.get(key)]
    return "+".join(v) if v else "no data pages"


@dataclass
class Leaf:
    physical: str
    logical: str  # shortened logical type, "" when none
    required: bool

    def __str__(self) -> str:
        return self.physical + (f" {self.logical}" if self.logical else "")


def _short_logical(col) -> str:
    logical = str(col.logical_type)
    if logical in ("None", "NONE"):
        return f"({col.converted_type})" if col.converted_type not in (None, "NONE") else ""
    if logical.startswith("Timestamp("):
        utc = "isAdjustedToUTC=true" in logical
        units = {"milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}
        u = next((v for k, v in units.items() if f"timeUnit={k}" in logical), "?")
        return f"Timestamp({'UTC' if utc else 'local'}, {u})"
    if logical.startswith("Int("):
        bits = logical.split("bitWidth=")[1].split(",")[0]
        return f"Int({bits}, {'signed' if 'isSigned=true' in logical else 'unsigned'})"
    return logical


def leaf_types(path: Path) -> dict[str, Leaf]:
    """Leaf column path -> physical type, logical type and whether it is required."""
    s = pq.ParquetFile(path).schema
    return {
        s.column(i).path: Leaf(s.column(i).physical_type, _short_logical(s.column(i)), s.column(i).max_definition_level == 0)
        for i in range(len(s))
    }


def schema_notes(path: Path, reference: dict[str, Leaf], ref_arrow: pa.Schema) -> list[str]:
    """Differences from the reference Parquet schema (sample-data) and the Arrow types pyarrow reads."""
    notes = []
    mine = leaf_types(path)
    int_annotated, opt, req = [], [], []
    for col, leaf in mine.items():
        ref = reference.get(col)
        if ref is None:
            notes.append(f"extra `{col}`: {leaf}")
            continue
        if leaf.physical == ref.physical and leaf.logical.startswith("Int(") and not ref.logical:
            int_annotated.append(col)
        elif (leaf.physical, leaf.logical) != (ref.physical, ref.logical):
            notes.append(f"`{col}`: {leaf} (sample: {ref})")
        if leaf.required != ref.required:
            (req if leaf.required else opt).append(col)
    notes += [f"missing `{c}`" for c in reference if c not in mine]
    if int_annotated:
        notes.append("Int logical type on " + ", ".join(int_annotated) + " (sample: none)")
    if opt:
        notes.append("optional where the sample is required: " + ", ".join(opt))
    if req:
        notes.append("required where the sample is optional: " + ", ".join(req))
    read_as: dict[str, list[str]] = {}
    for f in pq.ParquetFile(path).schema_arrow:
        if f.name in ref_arrow.names and f.type != ref_arrow.field(f.name).type:
            read_as.setdefault(str(f.type), []).append(f.name)
    notes += [f"pyarrow reads {', '.join(cols)} as {t}" for t, cols in read_as.items()]
    return notes


def kv_keys(path: Path) -> list[str]:
    md = pq.ParquetFile(path).metadata.metadata or {}
    return sorted(k.decode() for k in md)


def read_back(path: Path, fx: Fixture) -> tuple[str, str]:
    """Read the whole file with pyarrow and with DuckDB; assert rows and ids. Returns (pyarrow, duckdb)."""
    want = len(fx.rows)
    want_ids = sorted(r[fx.key] for r in fx.rows if r[fx.key] is not None)

    t = pq.read_table(path)
    assert t.num_rows == want, f"{path.name}: pyarrow read {t.num_rows} rows, want {want}"
    got = sorted(v for v in t.column(fx.key).to_pylist() if v is not None)
    assert got == want_ids, f"{path.name}: pyarrow ids differ"
    pa_res = f"ok {t.num_rows}"

    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        d = con.sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_table()  # decodes every column
        assert d.num_rows == want, f"{path.name}: duckdb read {d.num_rows} rows, want {want}"
        got = sorted(v for v in d.column(fx.key).to_pylist() if v is not None)
        assert got == want_ids, f"{path.name}: duckdb ids differ"
        (n,) = con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()
        assert n == want, f"{path.name}: duckdb count(*) {n}, want {want}"
    finally:
        con.close()
    return pa_res, f"ok {d.num_rows}"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def writer_version(writer: str, path: Path) -> str:
    if writer == "pyarrow":
        return f"pyarrow {pa.__version__}"
    if writer == "duckdb":
        return f"duckdb {duckdb.__version__}"
    if writer == "polars":
        return f"polars {pl.__version__}"
    if writer == "spark":
        s = SPARK
        if s is not None:
            return f"pyspark {s.version}"
        kv = pq.ParquetFile(path).metadata.metadata or {}
        return f"Spark {kv.get(b'org.apache.spark.version', b'?').decode()} (earlier run)"
    return writer


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    ref_path = repo / "sample-data" / "corpus" / "part-00000.parquet"
    members_ref = repo / "sample-data" / "members.parquet"
    ref_types = {"corpus": leaf_types(ref_path), "snapshot": leaf_types(members_ref)}
    ref_arrow = {"corpus": CORPUS_SCHEMA, "snapshot": MEMBERS_SCHEMA, "userlist": USERLIST_SCHEMA}
    ref_types["userlist"] = {"member_id": Leaf("INT64", "", False)}

    results = []
    skipped = []
    scratch = Path(tempfile.mkdtemp(prefix="writer-fixtures-"))
    try:
        for fx in fixtures():
            path = out / fx.name
            if fx.writer == "spark" and spark_session() is None:
                if path.exists():
                    fx.notes.append(f"not regenerated in the last run ({SPARK_SKIP_REASON}); file kept")
                else:
                    skipped.append((fx.name, SPARK_SKIP_REASON))
                    print(f"SKIP {fx.name}: {SPARK_SKIP_REASON}")
                    continue
                same = "not checked"
            else:
                if path.exists():
                    path.unlink()
                try:
                    fx.write(path)
                except NoOutput as e:
                    skipped.append((fx.name, str(e)))
                    print(f"SKIP {fx.name}: {e}")
                    continue
                again = scratch / fx.name
                fx.write(again)
                same = "yes" if sha(again) == sha(path) else "no"
                if fx.writer == "spark":
                    # Observed with the pinned versions: parquet-mr lists each column chunk's
                    # `encodings` from a hash set, so their order changes between JVM runs.
                    same += " in one session; not across runs (footer `encodings` order)"

            md = pq.ParquetFile(path).metadata
            groups = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
            pages, page_notes = page_types(path)
            types = leaf_types(path)
            ts = str(types["created_at"]) if "created_at" in types else ""
            notes = schema_notes(path, ref_types[fx.kind], ref_arrow[fx.kind]) + page_notes + fx.notes
            encodings = sorted({e for g in range(md.num_row_groups) for c in range(md.num_columns)
                                for e in md.row_group(g).column(c).encodings})
            codecs = sorted({md.row_group(g).column(c).compression for g in range(md.num_row_groups)
                             for c in range(md.num_columns)})
            pa_ok, duck_ok = read_back(path, fx)
            outcome = policy_outcome(fx.rows) if fx.kind == "corpus" else None
            res = dict(
                fx=fx,
                version=writer_version(fx.writer, path),
                created_by=md.created_by,
                format_version=md.format_version,
                groups=groups,
                pages=pages,
                dpv=data_page_version(pages),
                ts=ts,
                notes=notes,
                encodings=encodings,
                codecs=codecs,
                kv=kv_keys(path),
                pa_ok=pa_ok,
                duck_ok=duck_ok,
                same=same,
                size=path.stat().st_size,
                outcome=outcome,
            )
            results.append(res)
            print(
                f"{fx.name}: {res['version']}; created_by={md.created_by!r}; "
                f"format_version={md.format_version}; row groups={len(groups)} {groups}; "
                f"pages={pages} ({res['dpv']}); created_at={ts or '-'}; encodings={encodings}; "
                f"codecs={codecs}; kv={res['kv']}; pyarrow={pa_ok}; duckdb={duck_ok}; "
                f"same bytes on rewrite={same}; {res['size']} bytes"
                + (f"; policy include/exclude={outcome[0]}/{outcome[1]}" if outcome else "")
            )
            for n in notes:
                print(f"    {n}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if SPARK is not None:
            SPARK.stop()

    write_readme(out, results, skipped)
    total = sum(r["size"] for r in results)
    print(f"{len(results)} files, {total} bytes; {len(skipped)} skipped")
    return 0


def write_readme(out: Path, results: list[dict], skipped: list[tuple[str, str]]) -> None:
    def groups_desc(g: list[int]) -> str:
        if not g:
            return "0"
        return f"{len(g)}: " + ", ".join(map(str, g))

    def pages_desc(p: dict[str, int]) -> str:
        abbrev = {"DATA_PAGE": "v1", "DATA_PAGE_V2": "v2", "DICTIONARY_PAGE": "dict", "INDEX_PAGE": "index"}
        return ", ".join(f"{n} {abbrev.get(k, k)}" for k, n in sorted(p.items())) or "none"

    versions = sorted({r["version"] for r in results})
    lines = [
        "# Parquet files from real writers",
        "",
        "Small Parquet files written by pyarrow, DuckDB, Polars and Spark, for integration tests that",
        "run corpusgate over what its users' writers actually produce. Every corpus file has the columns",
        "and types of `sample-data/corpus/part-00000.parquet` (`post_id`, `member_id`, `country`,",
        "`genai_consent`, `created_at`, `visibility`, `author_age`, `lang`, `text`), so",
        "`corpusgate filter --policy configs/genai-uk-eea-ch-pause.yaml` can decide it; differences",
        "a writer introduces are listed under *Schema vs sample*. The `snapshot-*` file follows",
        "`sample-data/members.parquet` (for `--consent-table` with `configs/consent-snapshot.yaml`);",
        "the `userlist-*` files are one-column (`member_id: int64`) Parquet user lists (`--user-list`).",
        "",
        "Regenerate with `bash scripts/writer-fixtures.sh` (creates `target/fixture-venv`, installs the",
        "pinned writers, runs `scripts/writer-fixtures.py tests/data/writers`, rewrites this README).",
        "The Spark files need Java 17+; without Spark they are kept as they are",
        "(`WRITER_FIXTURES_SPARK=0` skips Spark on purpose).",
        "",
        "Writers: " + ", ".join(versions) + ".",
        "",
        "Values: countries cycle through `GB, US, DE, JP, ZZ, FR, null, US, ch, ' us', JP` and consents",
        "through `opt_in, opt_out, null`; `member_id` is null on every 17th row, `author_age` on every",
        "13th; in the INT96 files `created_at` is null on every 11th row. *Policy in/ex* is the",
        "expected number of rows included/excluded by `configs/genai-uk-eea-ch-pause.yaml` (GB, DE, FR,",
        "ch: paused; ZZ, null: unknown region; then opt_out excluded; the rest included).",
        "",
        "*Row groups* is the count and the rows in each. *Pages* counts the page headers of all column",
        "chunks (v1 = DATA_PAGE, v2 = DATA_PAGE_V2, dict = DICTIONARY_PAGE). *Read back* is the full",
        "read with pyarrow / DuckDB (row count and ids asserted). *Same bytes* is whether writing the",
        "file a second time gave identical bytes.",
        "",
        "| File | Bytes | Writer | created_by | Rows | Row groups | Pages | created_at | Encodings (column metadata); codec | Read back (pyarrow / duckdb) | Policy in/ex | Same bytes | How written | Schema vs sample, notes |",
        "| --- | ---: | --- | --- | ---: | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        fx = r["fx"]
        outcome = f"{r['outcome'][0]}/{r['outcome'][1]}" if r["outcome"] else "n/a"
        notes = "; ".join(r["notes"]) or "same as sample"
        if r["kv"]:
            notes += "; footer key-value: " + ", ".join(f"`{k}`" for k in r["kv"])
        cells = [
            f"`{fx.name}`",
            str(r["size"]),
            r["version"],
            f"`{r['created_by']}`",
            str(len(fx.rows)),
            groups_desc(r["groups"]),
            pages_desc(r["pages"]) + f" ({r['dpv']})",
            r["ts"] or "-",
            ", ".join(r["encodings"]) + "; " + ", ".join(r["codecs"]) if r["encodings"] else "-",
            f"{r['pa_ok']} / {r['duck_ok']}",
            outcome,
            r["same"],
            fx.how,
            notes,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines.append(f"Total: {len(results)} files, {sum(r['size'] for r in results)} bytes.")
    if skipped:
        lines += ["", "Not made in the last run:", ""]
        lines += [f"- `{n}`: {why}" for n, why in skipped]
    lines += ["", *NOTES, ""]
    (out / "README.md").write_text("\n".join(lines))


NOTES = [
    "What the pinned writers do (checked when these files were made):",
    "",
    "- pyarrow: `pq.write_table` of a zero-row table writes one row group of 0 rows whose column",
    "  chunks hold only an empty dictionary page and record `data_page_offset = 0`; the same goes",
    "  for the 0-row row group that `ParquetWriter.write_table` of an empty table appends between",
    "  non-empty ones (no workaround was needed). A `ParquetWriter` closed without a write leaves",
    "  0 row groups.",
    "- pyarrow with `use_deprecated_int96_timestamps=True` writes `created_at` as INT96 with no",
    "  logical type; pyarrow reads INT96 back as `timestamp[ns]` without a time zone, even though",
    "  its own `ARROW:schema` entry says `timestamp[us, tz=UTC]`.",
    "- DuckDB closes a row group only at a chunk boundary (2048 rows), so `ROW_GROUP_SIZE 40` alone",
    "  gives one row group for 160 rows; the source is an Arrow table in 40-row batches so that each",
    "  batch is a chunk. For zero rows DuckDB writes 0 row groups (a footer only). DuckDB makes every",
    "  column optional, puts an Int logical type on integer columns, uses the PLAIN_DICTIONARY",
    "  encoding name, and writes no `ARROW:schema`.",
    "- Polars honours `row_group_size`; for zero rows it writes 0 row groups. Its `ARROW:schema`",
    "  says `large_string`, so pyarrow (and arrow-rs readers that honour that entry) read the",
    "  strings as large strings. Every column is optional.",
    "- Spark (`local[1]`, `coalesce(1)`) writes one `part-*.parquet` plus `_SUCCESS` and `.crc`",
    "  files; only the part file is kept. An empty DataFrame still gets one part file, with 0 row",
    "  groups. Spark keeps non-nullable fields required, writes INT96 without a logical type and",
    "  stores its own schema under `org.apache.spark.sql.parquet.row.metadata`. parquet-mr lists each",
    "  column chunk's `encodings` in hash-set order, which changes between JVM runs: rerunning gives",
    "  the same data and sizes but not always the same bytes.",
    "- pyarrow, DuckDB and Polars wrote the same bytes in separate runs as well.",
]


if __name__ == "__main__":
    sys.exit(main())
