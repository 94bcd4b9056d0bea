"""Read (with validation) and write (atomically, with provenance) manifests.

No other module reads or writes Parquet: stages go through `read_manifest`
and `write_manifest`.

A `Manifest` holds the Arrow table it was read as; `Manifest.df` makes the pandas DataFrame on
first use. Stages that need no pandas (scan, repair, score, dedupe: every whole-CLI run of them
would otherwise pay pandas' ~0.45 s import) read `records` and add their columns with
`with_columns`, and pandas is never imported.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from common.atomic import atomic_path
from common.errors import ManifestError
from .arrays import build
from .ids import file_sha256
from .schema import COLUMNS, REQUIRED, SCHEMA_VERSION

META_KEY = b"motocurate"


def tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("motocurate")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        return "0+unknown"


class Manifest:
    """A manifest in memory: the table (Arrow, or the pandas DataFrame `df` once asked for) plus
    what the file says about itself.

    `df` is made from the table on first use, and from then on it is the manifest's content (a
    stage may change it in place, or assign a new one); `table` is always the current content.
    `records` and `with_columns` work on the table without pandas."""

    def __init__(self, df=None, root: str | None = None, history: list[dict] | None = None,
                 path: Path | None = None, schema_version: int = SCHEMA_VERSION, *,
                 table: pa.Table | None = None):
        if (df is None) == (table is None):
            raise ValueError("Manifest takes a DataFrame (df=) or an Arrow table (table=)")
        self._df, self._table = df, table
        self.root = root                               # absolute folder the `path` column is relative to
        self.history = list(history or [])             # provenance records, oldest first
        self.path = path                               # where it was read from
        self.schema_version = schema_version

    @property
    def df(self):
        """The table as a pandas DataFrame (nullable ints, booleans and strings keep their nulls)."""
        if self._df is None:
            self._df = self._table.to_pandas(types_mapper=_types_mapper)
            self._table = None
        return self._df

    @df.setter
    def df(self, df) -> None:
        self._df, self._table = df, None

    @property
    def table(self) -> pa.Table:
        """The content as an Arrow table with the declared types."""
        if self._df is not None:
            return to_table(self._df.reset_index(drop=True))
        return self._table

    @table.setter
    def table(self, table: pa.Table) -> None:
        self._df, self._table = None, table

    def __len__(self) -> int:
        return len(self._df) if self._df is not None else self._table.num_rows

    @property
    def columns(self) -> list[str]:
        return list(self._df.columns) if self._df is not None else list(self._table.column_names)

    def records(self, columns=None) -> list[dict]:
        """Every row as a dict of plain Python values (None for a null; lists for list columns) of
        `columns` (those present; default all)."""
        t = self.table
        if columns is not None:
            t = t.select([c for c in columns if c in t.column_names])
        return t.to_pylist()

    def column(self, name: str) -> list:
        """One column's values as plain Python values (None for a null)."""
        return self.table.column(name).to_pylist()

    def with_columns(self, values: dict[str, list], on: str = "sample_id") -> None:
        """Set a stage's columns: `values[on]` names the rows (sample ids), every other entry is a
        column of values for those rows (typed as `manifests.schema` declares it). Rows not named
        keep their old values (null in a new column); a named row the manifest lacks is an error:
        stages add columns, not files. The Arrow counterpart of `merge_columns`."""
        t = self.table
        ids = values[on]
        index = {v: i for i, v in enumerate(t.column(on).to_pylist())}
        unknown = [v for v in ids if v not in index]
        if unknown:
            raise ValueError(f"{len(unknown)} sample_id(s) not in the manifest, e.g. {sorted(unknown)[0]}")
        at = [index[v] for v in ids]
        n = t.num_rows
        whole = len(at) == n and at == list(range(n))
        for name, vals in values.items():
            if name == on:
                continue
            if len(vals) != len(ids):
                raise ValueError(f"column {name!r}: {len(vals)} value(s) for {len(ids)} row(s)")
            want = COLUMNS[name].type if name in COLUMNS else None
            if whole:
                col = list(vals)
            else:
                col = t.column(name).to_pylist() if name in t.column_names else [None] * n
                for i, v in zip(at, vals):
                    col[i] = v
            try:
                arr = build(col, want)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise ManifestError(f"cannot store column {name!r}: {exc}") from exc
            field_ = COLUMNS[name] if name in COLUMNS else pa.field(name, arr.type)
            if name in t.column_names:
                t = t.set_column(t.column_names.index(name), field_, arr)
            else:
                t = t.append_column(field_, arr)
        self.table = t

    @property
    def folder(self) -> Path:
        """The folder the manifest lives in (cache paths are relative to it)."""
        return (self.path or Path(".")).resolve().parent

    def stage_params(self, stage: str) -> dict | None:
        """Parameters of the latest write by `stage`, or None."""
        for rec in reversed(self.history):
            if rec.get("stage") == stage:
                return rec.get("params")
        return None


def _castable(got: pa.DataType, want: pa.DataType) -> bool:
    """Types a faithful rewrite of the same data can have: offset widths (string vs large_string, as
    pandas 3 writes), number widths (float64 where we declare float32, as pandas writes back) and
    lists/structs of those. A cast between them is tried with `safe=True`; anything else (text in
    a number column, a list in a scalar column) is a type error."""
    if got.equals(want):
        return True
    if pa.types.is_string(want) or pa.types.is_large_string(want):
        return pa.types.is_string(got) or pa.types.is_large_string(got)
    num = lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)  # noqa: E731
    if num(want):
        return num(got) and not (pa.types.is_floating(got) and pa.types.is_integer(want))
    if pa.types.is_list(want) or pa.types.is_large_list(want):
        return (pa.types.is_list(got) or pa.types.is_large_list(got)) and _castable(got.value_type,
                                                                                    want.value_type)
    if pa.types.is_struct(want):
        return (pa.types.is_struct(got) and [f.name for f in got] == [f.name for f in want]
                and all(_castable(g.type, w.type) for g, w in zip(got, want)))
    return False


def _normalise(table: pa.Table, where: str) -> pa.Table:
    """Cast known columns written with other offset or number widths to the declared type."""
    for i, name in enumerate(table.column_names):
        want = COLUMNS.get(name)
        got = table.schema.field(name).type
        if want is None or got.equals(want.type) or not _castable(got, want.type):
            continue  # an uncastable type is reported by _validate
        try:
            col = table.column(i).cast(want.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ManifestError(f"{where}: column {name!r} has type {got}, expected {want.type} "
                                f"({exc})") from exc
        table = table.set_column(i, want.with_nullable(True), col)
    return table


def _validate(table: pa.Table, where: str) -> None:
    names = set(table.column_names)
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ManifestError(f"{where}: missing required column(s) {', '.join(missing)}")
    for name in table.column_names:
        want = COLUMNS.get(name)
        if want is None:
            continue  # extra columns are the user's; kept as they are
        got = table.schema.field(name).type
        if not got.equals(want.type):
            raise ManifestError(f"{where}: column {name!r} has type {got}, expected {want.type}")
    ids = table.column("sample_id")
    if ids.null_count:
        raise ManifestError(f"{where}: column 'sample_id' has {ids.null_count} null value(s)")
    if len(set(ids.to_pylist())) != len(ids):       # (pyarrow.compute alone takes ~45 ms to import)
        raise ManifestError(f"{where}: column 'sample_id' has duplicate values")


def is_manifest(path: str | os.PathLike) -> bool:
    """A Parquet file written by `write_manifest` (its metadata carries our key), or one rewritten
    by another tool (pandas, say) that still has the required columns. Only a regular file that
    starts with Parquet's magic bytes is handed to pyarrow (a FIFO would block it forever)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            if f.read(4) != b"PAR1":
                return False
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError):
        return False
    return META_KEY in (schema.metadata or {}) or set(REQUIRED) <= set(schema.names)


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest; a `ManifestError` names what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    try:
        pf = pq.ParquetFile(path)
        table = pf.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError(f"{path}: not a readable Parquet manifest ({' '.join(str(exc).split())})") from exc
    raw = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw) if raw else {}
    version = int(meta.get("schema_version", SCHEMA_VERSION))
    if version > SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: written with manifest schema version {version}, this tool reads up to "
            f"{SCHEMA_VERSION}; upgrade motocurate"
        )
    table = _normalise(table, str(path))
    _validate(table, str(path))
    return Manifest(table=table, root=meta.get("root"), history=meta.get("history", []), path=path,
                    schema_version=version)


def _types_mapper(t: pa.DataType):
    # Keep nullable ints/bools/strings as pandas extension types so a null stays null.
    import pandas as pd

    if pa.types.is_integer(t):
        return {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
                pa.int16(): pd.Int16Dtype(), pa.int8(): pd.Int8Dtype()}.get(t)
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    if pa.types.is_string(t):
        return pd.StringDtype()
    return None


def to_table(df) -> pa.Table:
    """Convert a DataFrame with the declared types for known columns (inferring the rest)."""
    fields = []
    for name in df.columns:
        if name in COLUMNS:
            fields.append(COLUMNS[name])
        else:
            fields.append(pa.field(name, pa.Array.from_pandas(df[name]).type))
    try:
        return pa.Table.from_pandas(df, schema=pa.schema(fields), preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ManifestError(f"cannot store manifest: {exc}") from exc


def write_manifest(
    m: Manifest,
    path: str | os.PathLike,
    *,
    stage: str,
    params: dict | None = None,
    input_path: str | os.PathLike | None = None,
    root: str | None = None,
) -> Path:
    """Validate and write atomically (temp file in the same folder, then `os.replace`).

    Appends a provenance record: tool version, stage, resolved parameters, sha256
    of the input manifest, UTC time.
    """
    if not isinstance(m, Manifest):     # a DataFrame
        m = Manifest(df=m)
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"cannot write the manifest {path}: it is a folder; give a file name")
    if os.path.lexists(path) and not is_manifest(path):  # a user's photo (or a FIFO): never overwritten
        raise ManifestError(f"refusing to overwrite {path}: it exists and is not a motocurate manifest; "
                            "choose another file name")
    table = m.table
    _validate(table, str(path))
    record = {
        "stage": stage,
        "tool_version": tool_version(),
        "params": _jsonable(params or {}),
        "input_sha256": file_sha256(input_path) if input_path and Path(input_path).exists() else None,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta = {
        "schema_version": SCHEMA_VERSION,
        "root": root if root is not None else m.root,
        "history": [*m.history, record],
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           META_KEY: json.dumps(meta).encode()})
    for stale in path.parent.glob(f".{path.name}.*.tmp"):   # left by a write that was killed
        stale.unlink(missing_ok=True)
    try:
        with atomic_path(path, fsync=True) as tmp:
            pq.write_table(table, str(tmp))
    except (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise ManifestError(f"cannot write the manifest {path}: {exc.strerror or exc}") from exc
    m.history = meta["history"]
    m.root = meta["root"]
    m.path = path
    return path


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def merge_columns(base, new, on: str = "sample_id"):
    """Merge a stage's columns into `base` by `sample_id`.

    Columns in `new` replace same-named columns of `base`; rows of `base` that
    `new` does not mention keep their old values (null for new columns). Rows
    in `new` that `base` lacks are an error: stages add columns, not files.
    """
    if on not in new.columns:
        raise ValueError(f"merge needs a {on!r} column")
    unknown = set(new[on]) - set(base[on])
    if unknown:
        raise ValueError(f"{len(unknown)} sample_id(s) not in the manifest, e.g. {sorted(unknown)[0]}")
    import pandas as pd

    cols = [c for c in new.columns if c != on]
    out = base.copy()
    idx = pd.Index(out[on]).get_indexer(new[on])
    for c in cols:
        if c not in out.columns:
            out[c] = pd.Series([None] * len(out), dtype=new[c].dtype if len(new) else object)
        col = out[c].astype(object) if out[c].dtype != new[c].dtype else out[c].copy()
        values = new[c].to_numpy(dtype=object)
        arr = col.to_numpy(dtype=object).copy()
        arr[idx] = values
        out[c] = pd.Series(arr, index=out.index)
        try:
            out[c] = out[c].astype(new[c].dtype)
        except (TypeError, ValueError):
            pass
    return out
