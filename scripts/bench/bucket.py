"""Bucket chores for scripts/bench/bucket.sh, through boto3 (endpoint and keys from the AWS_*
variables the script exports), and the bytes a clustered run must read.

  bucket.py mkbucket NAME
  bucket.py put DIR s3://BUCKET/PREFIX     # every file under DIR, by relative path
  bucket.py get s3://BUCKET/PREFIX DIR     # every object under PREFIX, by relative key
  bucket.py rm s3://BUCKET/PREFIX          # every object under PREFIX
  bucket.py required DIR                   # must-read bytes of the bench policy over DIR/*.parquet

put and get print "BYTES SECONDS OBJECTS" (16 requests in flight, boto3's default multipart
settings).
"""

import concurrent.futures
import glob
import os
import pathlib
import sys
import time

THREADS = 16


def client():
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=THREADS,
            retries={"max_attempts": 5, "mode": "standard"},
        ),
    )


def split(url):
    assert url.startswith("s3://"), url
    bucket, _, prefix = url[5:].partition("/")
    return bucket, prefix.strip("/")


def keys(s3, bucket, prefix):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        out.extend((o["Key"], o["Size"]) for o in page.get("Contents", []))
    return out


def parallel(fn, items):
    with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
        for _ in ex.map(fn, items):
            pass


def put(src, url):
    s3 = client()
    bucket, prefix = split(url)
    files = sorted(p for p in pathlib.Path(src).rglob("*") if p.is_file())
    t0 = time.monotonic()
    parallel(lambda p: s3.upload_file(str(p), bucket, f"{prefix}/{p.relative_to(src)}"), files)
    dt = time.monotonic() - t0
    print(sum(p.stat().st_size for p in files), f"{dt:.3f}", len(files))


def get(url, dest):
    s3 = client()
    bucket, prefix = split(url)
    objs = keys(s3, bucket, prefix)
    t0 = time.monotonic()

    def one(kv):
        path = pathlib.Path(dest) / kv[0][len(prefix) + 1 :]
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, kv[0], str(path))

    parallel(one, objs)
    dt = time.monotonic() - t0
    print(sum(s for _, s in objs), f"{dt:.3f}", len(objs))


def rm(url):
    s3 = client()
    bucket, prefix = split(url)
    objs = [k for k, _ in keys(s3, bucket, prefix)]
    for i in range(0, len(objs), 1000):
        s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in objs[i : i + 1000]], "Quiet": True}
        )


def required(src):
    """Bytes a run of configs/genai-uk-eea-ch-pause.yaml must read over DIR/*.parquet: each
    file's footer (metadata + 8 bytes); every column chunk of a row group that keeps a row;
    of any other row group the columns the policy reads (region, consent) and those its
    manifest copies (record_id, user_id). Rows are decided by scripts/bench/policy.py, not by
    corpusgate. Prints "REQUIRED POLICY_ONLY FILE_BYTES ROW_GROUPS KEPT_ROW_GROUPS", where
    POLICY_ONLY counts region and consent alone for the row groups that keep nothing."""
    import pyarrow.parquet as pq

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    from policy import KEEP_RULE, decide

    region, consent = "country", "genai_consent"
    ids = ("post_id", "member_id")
    total = policy_only = file_bytes = groups = kept_groups = 0
    for path in sorted(glob.glob(os.path.join(src, "*.parquet"))):
        size = os.path.getsize(path)
        file_bytes += size
        pf = pq.ParquetFile(path)
        md = pf.metadata
        with open(path, "rb") as f:
            f.seek(size - 8)
            footer = int.from_bytes(f.read(4), "little") + 8
        total += footer
        policy_only += footer
        for g in range(md.num_row_groups):
            groups += 1
            rg = md.row_group(g)
            chunks = {}
            for c in range(rg.num_columns):
                col = rg.column(c)
                chunks[col.path_in_schema] = col.total_compressed_size
            pairs = pf.read_row_group(g, columns=[region, consent]).group_by([region, consent]).aggregate([])
            keeps = any(
                decide(c, k)[0] == KEEP_RULE
                for c, k in zip(pairs.column(region).to_pylist(), pairs.column(consent).to_pylist())
            )
            if keeps:
                kept_groups += 1
                total += sum(chunks.values())
                policy_only += sum(chunks.values())
            else:
                total += sum(chunks[n] for n in (region, consent, *ids))
                policy_only += chunks[region] + chunks[consent]
    print(total, policy_only, file_bytes, groups, kept_groups)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "mkbucket":
        s3 = client()
        try:
            s3.create_bucket(Bucket=args[0])
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    elif cmd == "put":
        put(*args)
    elif cmd == "get":
        get(*args)
    elif cmd == "rm":
        rm(*args)
    elif cmd == "required":
        required(*args)
    else:
        raise SystemExit(f"bucket.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
