"""The Python module against the command line: the same decisions, the same kept rows and
manifest rows, typed errors carrying the CLI's exit codes.

Run by scripts/python-ci.sh against the installed wheel (CORPUSGATE_REPO: the repository)."""

import os
import pathlib
import random
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import corpusgate

REPO = pathlib.Path(os.environ.get("CORPUSGATE_REPO", pathlib.Path(__file__).parents[2]))
SAMPLE = REPO / "sample-data"
CORPUS = sorted((SAMPLE / "corpus").glob("*.parquet"))
POLICIES = sorted((REPO / "configs").glob("*.yaml"))
JOIN = {
    "consent_table": SAMPLE / "members.parquet",
    "user_lists": {"erasure": SAMPLE / "erasure-requests.txt"},
}


def join_of(policy_path):
    return JOIN if "consent_table:" in policy_path.read_text() else {}


def cli_filter(policy_path, out, inputs, **join):
    """The installed `corpusgate` command (the wheel's), as a subprocess."""
    argv = ["corpusgate", "filter", "--policy", str(policy_path), "--progress", "never"]
    argv += ["-o", str(out)]
    if "consent_table" in join:
        argv += ["--consent-table", str(join["consent_table"])]
    for name, path in join.get("user_lists", {}).items():
        argv += ["--user-list", f"{name}={path}"]
    argv += [str(p) for p in inputs]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def same_rows(got, want):
    """Same column names, types and values, row for row (dictionary-encoded columns compared
    by value: two readers may build their dictionaries differently)."""
    got = got if isinstance(got, pa.Table) else pa.Table.from_batches([got])
    assert got.schema.names == want.schema.names
    assert [f.type for f in got.schema] == [f.type for f in want.schema]
    return got.to_pydict() == want.to_pydict()


MANIFEST_COLUMNS = ["row", "record_id", "user_id", "rule", "region"]


def manifest_part(manifest):
    names = [c for c in MANIFEST_COLUMNS if c in manifest.schema.names]
    return pa.Table.from_batches([manifest]).select(names) if isinstance(
        manifest, pa.RecordBatch
    ) else manifest.select(names)


@pytest.mark.parametrize("policy_path", POLICIES, ids=lambda p: p.stem)
def test_filter_equals_the_command_line_on_the_sample_data(policy_path, tmp_path):
    join = join_of(policy_path)
    cli_filter(policy_path, tmp_path / "out", [SAMPLE / "corpus"], **join)
    policy = corpusgate.Policy.from_file(policy_path)
    kept_total = excluded_total = 0
    for f in CORPUS:
        table = pq.read_table(f)
        kept, manifest = policy.filter(table, **join)
        want_kept = pq.read_table(tmp_path / "out" / "data" / f.name)
        assert kept.schema.remove_metadata() == table.schema.remove_metadata()
        assert same_rows(kept, want_kept)
        excluded = tmp_path / "out" / "excluded" / f.name
        want = pq.read_table(excluded) if excluded.exists() else None
        got = manifest_part(manifest)
        if want is None:
            assert got.num_rows == 0
        else:
            assert same_rows(got, manifest_part(want))
        assert manifest.column("source_file").null_count == manifest.num_rows
        # decide() says the same of every row.
        d = policy.decide(table, **join)
        assert d.schema.names == ["keep", "rule", "region"]
        assert d.num_rows == table.num_rows
        assert d.column("keep").to_pylist().count(True) == kept.num_rows
        dropped = [i for i, k in enumerate(d.column("keep").to_pylist()) if not k]
        assert dropped == got.column("row").to_pylist()
        assert [d.column("rule")[i].as_py() for i in dropped] == got.column("rule").to_pylist()
        assert [d.column("region")[i].as_py() for i in dropped] == got.column(
            "region"
        ).to_pylist()
        kept_total += kept.num_rows
        excluded_total += got.num_rows
    # The sample data exercises both outcomes under every example policy.
    assert kept_total > 0 and excluded_total > 0


def test_a_generated_corpus_in_chunks_and_batches(tmp_path):
    """Random rows over every region code the policies name and odd ones, in a table of
    several chunks: rows are numbered across chunks, batches decide alike."""
    rng = random.Random(7)
    regions = ["GB", "gb", "FR", "DE", "CH", "US", "BR", "XX", "", None, "Europe", "uk"]
    consents = ["opt_in", "opt_out", "OPT_IN", "unknown", None, "maybe"]
    n = 5000
    sample = pq.read_table(CORPUS[0])
    policy_path = REPO / "configs" / "genai-uk-eea-ch-pause.yaml"
    policy = corpusgate.Policy.from_file(policy_path)
    columns = {}
    for field in sample.schema:
        col = sample.column(field.name)
        picks = [rng.randrange(sample.num_rows) for _ in range(n)]
        columns[field.name] = col.take(pa.array(picks))
    table = pa.table(columns)
    for name, values in [("country", regions), ("genai_consent", consents)]:
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(
                i, name, pa.array([rng.choice(values) for _ in range(n)], pa.string())
            )
    pq.write_table(table, tmp_path / "gen.parquet", row_group_size=700)
    cli_filter(policy_path, tmp_path / "out", [tmp_path / "gen.parquet"])
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=777))
    assert chunked.column(0).num_chunks > 1
    kept, manifest = policy.filter(chunked)
    assert same_rows(kept, pq.read_table(tmp_path / "out" / "data" / "gen.parquet"))
    want = manifest_part(pq.read_table(tmp_path / "out" / "excluded" / "gen.parquet"))
    got = manifest_part(manifest)
    assert same_rows(got, want)
    # Batch by batch: the same decisions.
    by_batch = [policy.decide(b) for b in chunked.to_batches()]
    whole = policy.decide(chunked)
    assert pa.Table.from_batches(by_batch).equals(pa.Table.from_batches([whole]))
    # A RecordBatch in, a RecordBatch out.
    batch = chunked.to_batches()[0]
    k, _ = policy.filter(batch)
    assert isinstance(k, pa.RecordBatch)


def test_polars_frames_decide_like_pyarrow_tables():
    import polars as pl  # installed by scripts/python-ci.sh: a missing one fails, never skips
    policy = corpusgate.Policy.from_file(REPO / "configs" / "consent-snapshot.yaml")
    table = pq.read_table(CORPUS[0])
    frame = pl.from_arrow(table)
    a = policy.decide(table, **JOIN)
    b = policy.decide(frame, **JOIN)
    assert a.equals(b)


def test_a_policy_error_names_file_line_and_column(tmp_path):
    text = (REPO / "configs" / "opt-in-only.yaml").read_text()
    bad = text.replace("rules:", "rulez:", 1)
    assert bad != text
    with pytest.raises(corpusgate.PolicyError) as e:
        corpusgate.Policy.from_text(bad, "mine.yaml")
    assert e.value.exit_code == 2
    assert str(e.value).startswith("mine.yaml:"), str(e.value)
    line, col = str(e.value).split(":")[1:3]
    assert int(line) >= 1 and int(col) >= 1
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(corpusgate.PolicyError) as e2:
        corpusgate.Policy.from_file(path)
    assert str(e2.value).startswith(f"{path}:")
    # The same message the command prints.
    done = subprocess.run(
        ["corpusgate", "check", "--policy", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert str(e2.value) in done.stderr


def test_policy_identity_and_its_own_tests():
    path = REPO / "configs" / "meta-uk-2024.yaml"
    policy = corpusgate.Policy.from_file(path)
    import hashlib

    assert policy.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert policy.id and policy.id in repr(policy)
    assert policy.check() > 0
    again = corpusgate.Policy.from_text(path.read_text())
    assert again.sha256 == policy.sha256


def test_failing_policy_tests_raise(tmp_path):
    text = (REPO / "configs" / "meta-uk-2024.yaml").read_text()
    assert "expect: eu-eea-paused" in text
    flipped = text.replace("expect: eu-eea-paused", "expect: default", 1)
    policy = corpusgate.Policy.from_text(flipped)
    with pytest.raises(corpusgate.PolicyError) as e:
        policy.check()
    assert "policy tests failed" in str(e.value)


def test_schema_and_usage_errors_are_typed():
    policy = corpusgate.Policy.from_file(REPO / "configs" / "genai-uk-eea-ch-pause.yaml")
    table = pq.read_table(CORPUS[0]).drop_columns(["country"])
    with pytest.raises(corpusgate.SchemaError) as e:
        policy.decide(table)
    assert "country" in str(e.value) and e.value.exit_code == 2
    joined = corpusgate.Policy.from_file(REPO / "configs" / "consent-snapshot.yaml")
    with pytest.raises(corpusgate.UsageError) as e:
        joined.decide(pq.read_table(CORPUS[0]))
    assert "consent" in str(e.value) and e.value.exit_code == 2
    with pytest.raises(TypeError):
        policy.decide([1, 2, 3])


def test_filter_in_process_writes_what_the_command_writes(tmp_path):
    policy_path = REPO / "configs" / "consent-snapshot.yaml"
    cli_filter(policy_path, tmp_path / "cli", [SAMPLE / "corpus"], **JOIN)
    summary = corpusgate.filter(
        policy=policy_path, inputs=[SAMPLE / "corpus"], output=tmp_path / "py", threads=2, **JOIN
    )
    assert summary["exit_code"] == 0
    assert summary["rows"]["total"] if isinstance(summary.get("rows"), dict) else True
    for sub in ["data", "excluded"]:
        for f in sorted((tmp_path / "cli" / sub).iterdir()):
            assert (tmp_path / "py" / sub / f.name).read_bytes() == f.read_bytes(), f
    # Run twice into the same OUT without overwrite: a usage error, exit 2, output untouched.
    with pytest.raises(corpusgate.UsageError) as e:
        corpusgate.filter(
            policy=policy_path, inputs=[SAMPLE / "corpus"], output=tmp_path / "py", **JOIN
        )
    assert e.value.exit_code == 2
    # A missing input is an error too, never a silent empty run.
    with pytest.raises(corpusgate.CorpusgateError) as e:
        corpusgate.filter(
            policy=policy_path, inputs=[tmp_path / "nope"], output=tmp_path / "x", **JOIN
        )
    assert e.value.exit_code in (1, 2)
    assert corpusgate.run(["check", "--policy", str(policy_path)]) == 0


def test_a_snapshot_and_lists_in_memory_decide_as_their_files(tmp_path):
    """consent_table and user_lists as Arrow data (a pyarrow Table, a Polars frame, an Array, a
    Python list): the same decisions as the files, loaded once per object, and checked as the
    command line checks files."""
    import polars as pl

    policy = corpusgate.Policy.from_file(REPO / "configs" / "consent-snapshot.yaml")
    members = pq.read_table(JOIN["consent_table"])
    ids = [
        int(line)
        for line in JOIN["user_lists"]["erasure"].read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ids and members.num_rows > 0
    user_type = members.schema.field(0).type
    want = pa.Table.from_batches([policy.decide(pq.read_table(f), **JOIN) for f in CORPUS])
    assert not all(want.column("keep").to_pylist()), "the sample must exclude some rows"
    for snapshot, erasure in [
        (members, pa.array(ids, user_type)),
        (pl.from_arrow(members), ids),
        (
            members.combine_chunks().to_batches()[0],
            pa.table({"id": pa.array(ids, user_type)}),
        ),
    ]:
        got = pa.Table.from_batches(
            [
                policy.decide(
                    pq.read_table(f), consent_table=snapshot, user_lists={"erasure": erasure}
                )
                for f in CORPUS
            ]
        )
        assert got.equals(want)
    # Loaded once per object: the same objects give the same join handle.
    lists = {"erasure": ids}
    policy.decide(pq.read_table(CORPUS[0]), consent_table=members, user_lists=lists)
    n = len(policy._joins)
    policy.decide(pq.read_table(CORPUS[1]), consent_table=members, user_lists=lists)
    assert len(policy._joins) == n
    # Checked like files: a snapshot missing a column the policy maps is a schema error naming
    # it and <consent_table>; a list of two columns, or of the wrong type, likewise.
    with pytest.raises(corpusgate.SchemaError) as e:
        policy.decide(
            pq.read_table(CORPUS[0]),
            consent_table=members.drop_columns([members.schema.names[1]]),
            user_lists=lists,
        )
    assert "<consent_table>" in str(e.value) and members.schema.names[1] in str(e.value)
    with pytest.raises(corpusgate.SchemaError) as e:
        policy.decide(
            pq.read_table(CORPUS[0]),
            consent_table=members,
            user_lists={"erasure": pa.table({"a": ids, "b": ids})},
        )
    assert "<user list erasure>" in str(e.value) and "exactly one column" in str(e.value)
    with pytest.raises(corpusgate.SchemaError):
        policy.decide(
            pq.read_table(CORPUS[0]),
            consent_table=members,
            user_lists={"erasure": [str(i) for i in ids]},
        )
    with pytest.raises(TypeError):
        policy.decide(pq.read_table(CORPUS[0]), consent_table=42, user_lists=lists)
