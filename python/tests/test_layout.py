"""`filter --target-file-size`: OUT/data loads as it is in the readers trainers use (Hugging Face
`datasets`, `pyarrow.dataset`, Polars), holding every kept row in input order.

Run by scripts/python-ci.sh (which installs datasets and polars: a missing one fails)."""

import os
import pathlib
import subprocess

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from corpus_gen import plain

REPO = pathlib.Path(os.environ.get("CORPUSGATE_REPO", pathlib.Path(__file__).parents[2]))
SAMPLE = REPO / "sample-data"
POLICY = REPO / "configs" / "genai-uk-eea-ch-pause.yaml"


def uniform_corpus(dir):
    """The sample files with one schema (the sample stores `country` four ways; trainers'
    readers want one schema across files), several row groups each."""
    dir.mkdir()
    for f in sorted((SAMPLE / "corpus").glob("*.parquet")):
        pq.write_table(plain(pq.read_table(f)), dir / f.name, row_group_size=97)
    return dir


def filter_to(corpus, out, *extra):
    argv = ["corpusgate", "filter", "--policy", str(POLICY), "--progress", "never"]
    argv += ["-o", str(out), *extra, str(corpus)]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def plain_rows(out):
    """The kept rows of a run without layout flags, in input order."""
    files = sorted((out / "data").rglob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_parts_load_in_datasets_pyarrow_and_polars_in_input_order(tmp_path, monkeypatch):
    import datasets  # installed by scripts/python-ci.sh: a missing one fails, never skips
    import polars as pl

    corpus = uniform_corpus(tmp_path / "corpus")
    filter_to(corpus, tmp_path / "plain")
    filter_to(corpus, tmp_path / "parts", "--target-file-size", "16KiB", "--row-group-size", "64")
    want = plain_rows(tmp_path / "plain")
    assert len(want) > 500
    data = tmp_path / "parts" / "data"
    parts = sorted(p.name for p in data.iterdir())
    assert len(parts) > 3 and all(p.startswith("part-") for p in parts)

    # pyarrow.dataset: one dataset over the directory, fragments in name order.
    table = ds.dataset(data, format="parquet").to_table()
    assert table.to_pylist() == want

    # Polars: a lazy scan over every part.
    frame = pl.scan_parquet(str(data / "*.parquet")).collect()
    assert frame.height == len(want)
    assert frame.get_column("post_id").to_list() == [r["post_id"] for r in want]

    # Hugging Face datasets, offline, caching under tmp_path.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    loaded = datasets.load_dataset(
        "parquet", data_dir=str(data), split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert loaded.num_rows == len(want)
    assert loaded["post_id"] == [r["post_id"] for r in want]
    assert loaded["text"] == [r["text"] for r in want]
