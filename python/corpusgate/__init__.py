"""corpusgate: makes LLM training corpora lawful to train on.

A reviewed YAML policy decides every record from its author's region and consent (inline, or
joined from a consent snapshot by user id). This package is the same engine as the
``corpusgate`` command, which it also installs:

- :class:`Policy` decides Arrow data in memory (pyarrow tables and batches, or anything that
  exports the Arrow PyCapsule interface, such as Polars frames), so Spark's ``mapInArrow``, Ray
  Data's ``map_batches`` and DuckDB's Arrow UDFs apply the policy where the data already flows;
- :func:`filter` runs the command line's whole ``filter`` job in this process.

Decisions equal the command line's on the same rows.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

import pyarrow as pa
import pyarrow.compute as pc

from . import _corpusgate
from ._corpusgate import (
    CorpusgateError,
    PolicyError,
    RunError,
    SchemaError,
    UsageError,
    __version__,
)

__all__ = [
    "CorpusgateError",
    "Policy",
    "PolicyError",
    "RunError",
    "SchemaError",
    "UsageError",
    "filter",
    "run",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]


def _as_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if hasattr(data, "__arrow_c_array__"):
        return pa.Table.from_batches([pa.record_batch(data)])
    raise TypeError(
        f"expected a pyarrow Table or RecordBatch, or an object exporting the Arrow PyCapsule "
        f"interface (__arrow_c_stream__ or __arrow_c_array__), not {type(data).__name__}"
    )


JoinData = Any
"""A consent snapshot or user list: a path (a Parquet file or directory; a list may also be a
text file of ids), or Arrow data in memory (a pyarrow Table or RecordBatch, or anything exporting
the Arrow PyCapsule interface). A list in memory has one column of ids; a pyarrow Array, or a
Python sequence of ids, is taken as that column."""


def _is_path(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike))


def _join_arg(source: Any, what: str) -> Any:
    if _is_path(source):
        return os.fspath(source)
    if isinstance(source, (pa.Array, pa.ChunkedArray)):
        return pa.table({"id": source})
    if isinstance(source, (list, tuple)):
        return pa.table({"id": pa.array(source)})
    try:
        return _as_table(source)
    except TypeError:
        raise TypeError(
            f"{what} must be a path or Arrow data (a pyarrow Table or RecordBatch, or an object "
            f"exporting the Arrow PyCapsule interface), not {type(source).__name__}"
        ) from None


def _join_key(source: Any) -> Any:
    # A path by its text; Arrow data by identity (the object is kept in the cache with its
    # loaded form, so its id is not reused while the entry lives).
    return ("path", os.fspath(source)) if _is_path(source) else ("object", id(source))


_JOINS_KEPT = 8

_VIEWS = {pa.string_view(): pa.large_string(), pa.binary_view(): pa.large_binary()}


def _take(data, indices):
    """``data.take(indices)``, also for string and binary views, which pyarrow (26) has no
    take or filter kernel for: those columns go through their large type and back."""
    views = [i for i, f in enumerate(data.schema) if f.type in _VIEWS]
    if not views:
        return data.take(indices)
    columns = list(data.columns)
    for i in views:
        columns[i] = columns[i].cast(_VIEWS[data.schema.field(i).type])
    taken = type(data).from_arrays(columns, names=data.schema.names).take(indices)
    out = list(taken.columns)
    for i in views:
        out[i] = out[i].cast(data.schema.field(i).type)
    return type(data).from_arrays(out, schema=data.schema)


class Policy:
    """A validated policy. Load it with :meth:`from_file` or :meth:`from_text`.

    A consent snapshot and user lists passed to :meth:`decide` or :meth:`filter` (paths, or
    Arrow data in memory: see :data:`JoinData`) are loaded once, into the structures the
    command line uses, and reused by every later call naming the same paths or passing the same
    objects (the last 8 such sets are kept). A file changed after its first use is not read
    again: load the policy anew to see it.
    """

    __slots__ = ("_inner", "_joins")

    def __init__(self, inner: "_corpusgate.Policy") -> None:
        self._inner = inner
        # (snapshot key, list keys) -> (the objects given, the loaded join), newest last.
        self._joins: dict = {}

    def _join(
        self, consent_table: Optional[JoinData], user_lists: Optional[Mapping[str, JoinData]]
    ) -> "_corpusgate.Join":
        lists = dict(user_lists or {})
        key = (
            None if consent_table is None else _join_key(consent_table),
            tuple((str(n), _join_key(s)) for n, s in lists.items()),
        )
        held = self._joins.pop(key, None)
        if held is None:
            join = self._inner._join(
                None if consent_table is None else _join_arg(consent_table, "consent_table"),
                [(str(n), _join_arg(s, f"user list {n!r}")) for n, s in lists.items()],
            )
            held = ((consent_table, lists), join)
            while len(self._joins) >= _JOINS_KEPT:
                self._joins.pop(next(iter(self._joins)))
        self._joins[key] = held
        return held[1]

    @classmethod
    def from_file(cls, path: PathLike) -> "Policy":
        """Read and validate a policy file; raises :class:`PolicyError` (``file:line:col: ...``)."""
        return cls(_corpusgate.Policy.from_file(os.fspath(path)))

    @classmethod
    def from_text(cls, text: str, name: str = "<policy>") -> "Policy":
        """Validate policy text; ``name`` stands for the file in error messages."""
        return cls(_corpusgate.Policy.from_text(text, name))

    @property
    def id(self) -> str:
        """The policy's ``id``."""
        return self._inner.id

    @property
    def sha256(self) -> str:
        """SHA-256 of the policy text, as the command line records it."""
        return self._inner.sha256

    @property
    def columns(self) -> list:
        """The corpus columns a decision reads, and the record and user id columns."""
        return list(self._inner.columns)

    def check(self) -> int:
        """Run the policy's own ``tests:``; returns how many passed, raises :class:`PolicyError`
        naming each failing test."""
        return self._inner.check()

    def _select(self, data: Any) -> pa.Table:
        table = _as_table(data)
        names = set(table.column_names)
        # Only what the policy reads crosses into the engine; a missing column is reported
        # by the engine, naming it.
        return table.select([c for c in self.columns if c in names])

    def decide(
        self,
        data: Any,
        *,
        consent_table: Optional[JoinData] = None,
        user_lists: Optional[Mapping[str, JoinData]] = None,
    ) -> pa.RecordBatch:
        """Decide every row: a ``pyarrow.RecordBatch`` with ``keep`` (bool), ``rule`` (the
        deciding rule's id, or ``default``) and ``region`` (ISO 3166 alpha-2, null when
        unknown), one row per row of ``data``, in order."""
        return self._inner._decide(self._select(data), self._join(consent_table, user_lists))

    def filter(
        self,
        data: Any,
        *,
        consent_table: Optional[JoinData] = None,
        user_lists: Optional[Mapping[str, JoinData]] = None,
    ) -> Tuple[Any, pa.RecordBatch]:
        """The kept rows (every column, schema unchanged: a RecordBatch for a RecordBatch, else
        a Table) and the exclusion manifest's rows as the command line writes them
        (``source_file`` null, ``row`` the row's index in ``data``)."""
        table = _as_table(data)
        keep, manifest = self._inner._filter(
            self._select(table), self._join(consent_table, user_lists)
        )
        out = data if isinstance(data, pa.RecordBatch) else table
        if keep.true_count == len(keep):
            return out, manifest
        return _take(out, pc.indices_nonzero(keep)), manifest

    def __repr__(self) -> str:
        return repr(self._inner)


_ERRORS = {2: UsageError}


def run(args: Iterable[str]) -> int:
    """Run a ``corpusgate`` command line in this process (without the program name); returns
    the exit code. Errors are printed on stderr, as the command prints them."""
    return _corpusgate.main(["corpusgate", *map(str, args)])


def filter(
    *,
    policy: PathLike,
    inputs: Iterable[PathLike],
    output: PathLike,
    consent_table: Optional[PathLike] = None,
    user_lists: Optional[Mapping[str, PathLike]] = None,
    **options: Any,
) -> dict:
    """Run ``corpusgate filter`` in this process (the same engine and files as the command),
    with the GIL released; Ctrl-C stops it cleanly as it stops the command.

    Other options are the command's long options with underscores: ``overwrite=True``,
    ``threads=4``, ``reuse="yesterday/"``, ``on_error="skip"``... Returns summary.json as a
    dict, with ``exit_code`` added (0, or 4 when inputs were quarantined). Raises
    :class:`UsageError` (exit 2: usage, policy or schema) or :class:`RunError` (1, 75, 130,
    143), each with ``exit_code``.
    """
    argv = ["corpusgate", "filter", "--policy", os.fspath(policy), "--output", os.fspath(output)]
    argv += ["--progress", "never"]
    if consent_table is not None:
        argv += ["--consent-table", os.fspath(consent_table)]
    for name, path in (user_lists or {}).items():
        argv += ["--user-list", f"{name}={os.fspath(path)}"]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    argv += [os.fspath(p) for p in inputs]
    code, message = _corpusgate.run(argv)
    if code not in (0, 4):
        error = _ERRORS.get(code, RunError)(message.strip().removeprefix("corpusgate: error: "))
        error.exit_code = code
        raise error
    with open(os.path.join(os.fspath(output), "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    summary["exit_code"] = code
    return summary
