"""`curate scan`, `repair`, `score` and `dedupe` run without importing pandas (its import is most
of each command's start-up, issue 15), and the manifests they write are the ones pandas would
write: the same values, types and nulls."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import Manifest, read_manifest, to_table
from manifests.arrays import build

REPO = Path(__file__).resolve().parents[1]

# Runs one `curate` command and says whether pandas was imported by the time it ended.
PROBE = """
import atexit, sys
atexit.register(lambda: print("pandas imported" if "pandas" in sys.modules else "no pandas", file=sys.stderr))
from curate.cli import main
main()
"""


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.column_names == b.column_names
    for c in a.column_names:
        assert a.schema.field(c).type == b.schema.field(c).type, c
        x, y = a.column(c).to_pylist(), b.column(c).to_pylist()
        assert [None if isinstance(v, float) and math.isnan(v) else v for v in x] == \
               [None if isinstance(v, float) and math.isnan(v) else v for v in y], c


@pytest.mark.parametrize("values,type_", [
    ([True, None, False, True], pa.bool_()),
    ([1, None, -3, 2 ** 31 - 1], pa.int32()),
    ([1, None, 2 ** 40, np.int64(5)], pa.int64()),
    ([0.1, None, 3, np.float32(0.25), 1e-45], pa.float32()),
    ([0.1, None, 2.5], pa.float64()),
    (["a", None, "", "é漢字"], pa.string()),
    ([None, None], pa.string()),
    ([[1.0, 2.0], None], pa.list_(pa.float32())),       # not flat: pyarrow.array builds it
])
def test_build_gives_what_pyarrow_array_gives(values, type_):
    got = build(values, type_)
    assert got.type == type_
    assert got.equals(pa.array(values, type=type_))


def test_build_takes_nan_for_a_null_and_leaves_odd_values_to_pyarrow():
    assert build([float("nan"), 1.5], pa.float32()).to_pylist() == [None, 1.5]   # as pandas writes it
    # a float in an integer column: whatever pyarrow makes of it, not numpy's own rounding
    assert build([1.5, 2], pa.int32()).equals(pa.array([1.5, 2], type=pa.int32()))
    with pytest.raises((pa.ArrowInvalid, OverflowError)):
        build([2 ** 40], pa.int32())


def test_with_columns_sets_named_rows_and_keeps_the_rest():
    m = Manifest(table=pa.table({"sample_id": ["a", "b", "c"], "path": ["a.jpg", "b.jpg", "c.jpg"]}))
    m.with_columns({"sample_id": ["c", "a"], "blur_raw": [2.0, 1.0], "score_error": [None, "x"]})
    assert m.column("blur_raw") == [1.0, None, 2.0]
    assert m.table.schema.field("blur_raw").type == pa.float32()        # the declared type
    m.with_columns({"sample_id": ["b"], "blur_raw": [5.0]})
    assert m.column("blur_raw") == [1.0, 5.0, 2.0]
    with pytest.raises(ValueError, match="not in the manifest"):
        m.with_columns({"sample_id": ["z"], "blur_raw": [1.0]})


def test_a_changed_dataframe_is_what_gets_written(tmp_path):
    """`df` once asked for is the content: a stage that edits it in place is not lost."""
    m = Manifest(table=pa.table({"sample_id": ["a", "b"], "path": ["a.jpg", "b.jpg"],
                                 "crop_index": pa.array([0, 0], pa.int32()), "status": ["ok", "ok"]}))
    m.df.loc[1, "status"] = "corrupt"
    assert m.column("status") == ["ok", "corrupt"]
    m.with_columns({"sample_id": ["a"], "error": ["gone"]})
    assert m.df["error"].tolist()[0] == "gone"


def _curate(args: list[str]) -> str:
    p = subprocess.run([sys.executable, "-c", PROBE, *args, "--no-progress"], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stderr


def test_the_four_stages_import_no_pandas_and_write_what_pandas_would(tmp_path, shared_data):
    """On 60 real scraped photos (and a copy, a mirrored copy and a broken file): each command runs
    pandas-free, and the manifest converted through pandas (`to_table(df)`) is the same table."""
    from PIL import Image, ImageOps

    src = sorted((shared_data / "web" / "bikes").iterdir())[:60]
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in src:
        shutil.copy(p, folder / p.name)
    shutil.copy(src[0], folder / "copy.jpg")
    ImageOps.mirror(Image.open(src[1]).convert("RGB")).save(folder / "mirrored.jpg")
    (folder / "broken.jpg").write_bytes(src[2].read_bytes()[:400])
    mp = tmp_path / "work" / "manifest.parquet"
    for args in (["scan", str(folder), "-o", str(mp)], ["repair", "--manifest", str(mp)],
                 ["score", "--manifest", str(mp)], ["dedupe", "--manifest", str(mp)],
                 ["scan", str(folder), "-o", str(mp)]):                   # a rescan keeps every column
        assert "no pandas" in _curate(args), args
    written = pq.read_table(mp)
    assert {"blur_raw", "dup_group", "repair_action"} <= set(written.column_names)
    assert sum(v is not None for v in written.column("dup_group").to_pylist()) >= 2
    _same(written.replace_schema_metadata(None), to_table(read_manifest(mp).df))
