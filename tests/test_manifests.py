"""The manifest contract: validation on read, atomic writes with provenance, merging columns."""
from __future__ import annotations

import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import (SCHEMA_VERSION, ManifestError, file_sha256, merge_columns, read_manifest,
                       sample_id, to_table, write_manifest)
from manifests.io import META_KEY, Manifest


def _df(n: int = 3) -> pd.DataFrame:
    shas = [f"{i:064x}" for i in range(n)]
    paths = [f"img_{i}.jpg" for i in range(n)]
    return pd.DataFrame({
        "sample_id": pd.array([sample_id(s, p, 0) for s, p in zip(shas, paths)], dtype="string"),
        "path": pd.array(paths, dtype="string"),
        "crop_index": pd.array([0] * n, dtype="Int32"),
        "status": pd.array(["ok"] * n, dtype="string"),
        "sha256": pd.array(shas, dtype="string"),
        "width": pd.array([10, None, 30][:n], dtype="Int32"),
    })


def _write_raw(table: pa.Table, path, meta: dict | None = None) -> None:
    """A Parquet file made without `write_manifest` (what a foreign or future tool might write)."""
    if meta is not None:
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path)


def test_roundtrip_keeps_types_nulls_root_and_history(tmp_path):
    p = tmp_path / "m.parquet"
    write_manifest(_df(), p, stage="scan", params={"max_pixels": 5}, root="/data/photos")
    m = read_manifest(p)
    assert m.root == "/data/photos" and m.path == p and m.folder == tmp_path.resolve()
    assert str(m.df["width"].dtype) == "Int32" and pd.isna(m.df.loc[1, "width"])
    assert str(m.df["path"].dtype).startswith("string")
    assert m.stage_params("scan") == {"max_pixels": 5}
    assert m.stage_params("repair") is None


def test_provenance_is_recorded_and_appended(tmp_path):
    p = tmp_path / "m.parquet"
    write_manifest(_df(), p, stage="scan", params={"a": 1}, root="/r")
    first_sha = file_sha256(p)
    m = read_manifest(p)
    write_manifest(m, p, stage="repair", params={"background": "#ffffff"}, input_path=p)
    h = read_manifest(p).history
    assert [r["stage"] for r in h] == ["scan", "repair"]
    rec = h[-1]
    assert rec["params"] == {"background": "#ffffff"}
    assert rec["input_sha256"] == first_sha
    assert rec["tool_version"] and rec["time"].endswith("+00:00")
    assert h[0]["input_sha256"] is None
    meta = json.loads(pq.ParquetFile(p).schema_arrow.metadata[META_KEY])
    assert meta["schema_version"] == SCHEMA_VERSION and meta["root"] == "/r"


def test_missing_required_column_is_refused_by_name(tmp_path):
    p = tmp_path / "m.parquet"
    _write_raw(to_table(_df().drop(columns=["status"])), p)
    with pytest.raises(ManifestError, match="missing required column.*status"):
        read_manifest(p)
    with pytest.raises(ManifestError, match="status"):
        write_manifest(_df().drop(columns=["status"]), tmp_path / "w.parquet", stage="x")


def test_newer_schema_is_refused(tmp_path):
    p = tmp_path / "m.parquet"
    _write_raw(to_table(_df()), p, {"schema_version": SCHEMA_VERSION + 1, "root": "/r", "history": []})
    with pytest.raises(ManifestError, match=f"schema version {SCHEMA_VERSION + 1}"):
        read_manifest(p)


def test_mistyped_column_is_refused_by_name(tmp_path):
    p = tmp_path / "m.parquet"
    table = to_table(_df())
    at = table.schema.get_field_index("width")
    table = table.set_column(at, pa.field("width", pa.string()), pa.array(["10", None, "30"]))
    _write_raw(table, p)
    with pytest.raises(ManifestError, match="'width'.*expected int32"):
        read_manifest(p)


def test_duplicate_or_null_sample_id_is_refused(tmp_path):
    df = _df()
    df.loc[2, "sample_id"] = df.loc[0, "sample_id"]
    with pytest.raises(ManifestError, match="duplicate"):
        write_manifest(df, tmp_path / "m.parquet", stage="x")
    assert not (tmp_path / "m.parquet").exists()


def test_not_parquet_and_absent_files_are_refused(tmp_path):
    bad = tmp_path / "m.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ManifestError, match="not a readable Parquet manifest"):
        read_manifest(bad)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "absent.parquet")


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "m.parquet"
    write_manifest(_df(), p, stage="scan", root="/r")
    before = p.read_bytes()
    df = _df()
    df["width"] = ["not", "an", "int"]         # cannot be stored as the declared int32
    with pytest.raises(ManifestError):
        write_manifest(df, p, stage="scan")
    assert p.read_bytes() == before, "a failed write leaves the old manifest as it was"
    write_manifest(read_manifest(p), p, stage="again")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.parquet"], "no temporary files"


def test_a_write_removes_the_temp_file_a_killed_write_left(tmp_path):
    p = tmp_path / "m.parquet"
    (tmp_path / ".m.parquet.k1ll3d.tmp").write_bytes(b"half a parquet file")
    write_manifest(_df(), p, stage="scan", root="/r")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.parquet"]


def test_unknown_columns_are_kept(tmp_path):
    p = tmp_path / "m.parquet"
    df = _df()
    df["my_note"] = ["a", "b", None]
    write_manifest(df, p, stage="x")
    assert read_manifest(p).df["my_note"].tolist()[:2] == ["a", "b"]


def test_merge_columns_by_sample_id():
    base = _df()
    new = pd.DataFrame({"sample_id": base["sample_id"].iloc[[2, 0]].to_numpy(),
                        "repair_action": pd.array(["converted", "none"], dtype="string"),
                        "width": pd.array([99, 98], dtype="Int32")})
    out = merge_columns(base, new)
    assert out["sample_id"].tolist() == base["sample_id"].tolist(), "row order kept"
    assert out["repair_action"].tolist()[0] == "none" and out["repair_action"].tolist()[2] == "converted"
    assert pd.isna(out.loc[1, "repair_action"]), "rows not mentioned get null"
    assert out["width"].tolist()[0] == 98 and out["width"].tolist()[1] is pd.NA
    assert str(out["width"].dtype) == "Int32"
    with pytest.raises(ValueError, match="not in the manifest"):
        merge_columns(base, pd.DataFrame({"sample_id": ["nope"], "x": [1]}))
    with pytest.raises(ValueError, match="sample_id"):
        merge_columns(base, pd.DataFrame({"x": [1]}))


def test_manifest_object_keeps_root_and_history_when_written_back(tmp_path):
    p = tmp_path / "m.parquet"
    write_manifest(Manifest(df=_df(), root="/photos"), p, stage="scan")
    m = read_manifest(p)
    write_manifest(m, tmp_path / "copy.parquet", stage="filter", input_path=p)
    c = read_manifest(tmp_path / "copy.parquet")
    assert c.root == "/photos" and [r["stage"] for r in c.history] == ["scan", "filter"]


def test_sample_id_is_stable_and_separates_paths_and_crops():
    a = sample_id("ab" * 32, "x.jpg", 0)
    assert a == sample_id("ab" * 32, "x.jpg", 0)
    assert a.startswith("ab" * 8)
    assert len({a, sample_id("ab" * 32, "y.jpg", 0), sample_id("ab" * 32, "x.jpg", 1)}) == 3


def test_a_manifest_rewritten_by_pandas_is_read_back(tmp_path):
    """pandas writes float32 back as double (also inside the detections structs) and strings with
    large offsets; a user who edited rows that way changed nothing we should refuse."""
    df = _df()
    df["busy_score"] = pd.array([0.25, None, 0.5], dtype="Float32")
    box = {"label": "motorcycle", "conf": 0.5, "x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0}
    df["detections"] = [[box], [], None]
    p, edited = tmp_path / "m.parquet", tmp_path / "edited.parquet"
    write_manifest(df, p, stage="detect", root="/r")
    pd.read_parquet(p).drop(index=1).to_parquet(edited)          # a hand edit: one row dropped
    m = read_manifest(edited)
    assert len(m.df) == 2
    assert m.df["busy_score"].tolist() == [0.25, 0.5] and m.df["detections"].iloc[0][0]["conf"] == 0.5
    write_manifest(m, edited, stage="again")                     # and stored with the declared types
    assert pq.read_schema(edited).field("detections").type.equals(pa.list_(
        pq.read_schema(p).field("detections").type.value_type))


def test_a_fraction_in_an_integer_column_is_still_refused(tmp_path):
    p = tmp_path / "m.parquet"
    table = to_table(_df())
    at = table.schema.get_field_index("width")
    table = table.set_column(at, pa.field("width", pa.float64()), pa.array([10.5, None, 30.0]))
    _write_raw(table, p)
    with pytest.raises(ManifestError, match="'width'.*expected int32"):
        read_manifest(p)


def test_a_file_that_is_not_a_manifest_is_never_overwritten(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff a user's photo")
    with pytest.raises(ManifestError, match="refusing to overwrite .*photo.jpg.*not a motocurate manifest"):
        write_manifest(_df(), photo, stage="filter")
    assert photo.read_bytes() == b"\xff\xd8\xff a user's photo"
    foreign = tmp_path / "theirs.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), foreign)             # Parquet, but not a manifest
    with pytest.raises(ManifestError, match="not a motocurate manifest"):
        write_manifest(_df(), foreign, stage="filter")
    with pytest.raises(ManifestError, match="is a folder"):
        write_manifest(_df(), tmp_path, stage="filter")
    fifo = tmp_path / "pipe.parquet"
    os.mkfifo(fifo)                                              # never opened: it would block forever
    with pytest.raises(ManifestError, match="not a motocurate manifest"):
        write_manifest(_df(), fifo, stage="filter")
