"""The engine examples (examples/): rows each engine keeps, and each excluded row's rule and
region, equal the command line's output on the same files: the sample corpus and a generated
one (corpus_gen.py)."""

import importlib.util
import pathlib

import pyarrow.parquet as pq
import pytest

import corpus_gen
from test_api import JOIN, POLICIES, REPO, SAMPLE, cli_filter, join_of


@pytest.fixture(scope="module", params=["sample", "generated"])
def corpus(request, tmp_path_factory):
    if request.param == "sample":
        return SAMPLE / "corpus"
    return corpus_gen.generate(tmp_path_factory.mktemp("generated"))


def load_example(rel):
    path = REPO / "examples" / rel
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli_outcome(out):
    """{post_id: None if kept else (rule, region)} of a `filter` output."""
    outcome = {}
    for f in sorted((out / "data").glob("*.parquet")):
        for pid in pq.read_table(f, columns=["post_id"]).column(0).to_pylist():
            outcome[pid] = None
    for f in sorted((out / "excluded").glob("*.parquet")):
        t = pq.read_table(f, columns=["record_id", "rule", "region"]).to_pydict()
        for pid, rule, region in zip(t["record_id"], t["rule"], t["region"]):
            outcome[pid] = (rule, region)
    return outcome


@pytest.mark.parametrize("policy_path", POLICIES, ids=lambda p: p.stem)
def test_duckdb_udfs_decide_as_the_command_line(policy_path, corpus, tmp_path):
    import duckdb  # installed by scripts/python-ci.sh: a missing one fails, never skips

    import corpusgate

    example = load_example("duckdb/policy_udf.py")
    join = join_of(policy_path)
    cli_filter(policy_path, tmp_path / "out", [corpus], **join)
    want = cli_outcome(tmp_path / "out")
    con = duckdb.connect()
    policy = corpusgate.Policy.from_file(policy_path)
    source = f"read_parquet('{corpus}/*.parquet', union_by_name = true)"
    cols = example.register(con, policy, source, **join)
    rows = con.sql(
        f"SELECT post_id, corpusgate_keep({cols}), corpusgate_rule({cols}), "
        f"corpusgate_region({cols}) FROM {source}"
    ).fetchall()
    got = {pid: None if keep else (rule, region) for pid, keep, rule, region in rows}
    assert len(rows) == len(got) == len(want)
    assert got == want
    # The WHERE form keeps the same rows.
    kept = con.sql(f"SELECT post_id FROM {source} WHERE corpusgate_keep({cols})").fetchall()
    assert sorted(r[0] for r in kept) == sorted(k for k, v in want.items() if v is None)


def test_the_duckdb_example_runs_as_a_script(capsys):
    example = load_example("duckdb/policy_udf.py")
    code = example.main(
        [
            "--policy",
            str(REPO / "configs" / "consent-snapshot.yaml"),
            "--consent-table",
            str(JOIN["consent_table"]),
            "--user-list",
            f"erasure={JOIN['user_lists']['erasure']}",
            str(SAMPLE / "corpus" / "*.parquet"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "rows kept" in out and "excluded by region-paused (GB)" in out
