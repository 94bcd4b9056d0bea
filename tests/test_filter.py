"""`curate filter`: automatic rules, the reviewer's decisions (human wins), rule options, clean manifest."""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from curate.filter import REVIEWER, FilterOptions, applicable_rules, decide, filter_manifest
from manifests import file_sha256, read_manifest, sample_id, write_manifest
from common.errors import ManifestError, UserError


def make_manifest(tmp_path: Path, n: int, **columns) -> Path:
    """A manifest over `n` generated PNGs with scan columns plus `columns` (one value per row)."""
    root = tmp_path / "photos"
    root.mkdir()
    rows = []
    for i in range(n):
        p = root / f"img_{i:02d}.png"
        Image.new("RGB", (60 + i, 40), ((37 * i) % 256, 90, 160)).save(p)
        sha = file_sha256(p)
        rows.append({"sample_id": sample_id(sha, p.name, 0), "path": p.name, "crop_index": 0,
                     "status": "ok", "sha256": sha, "width": 60 + i, "height": 40})
    df = pd.DataFrame(rows)
    for k, v in columns.items():
        df[k] = v
    path = tmp_path / "work" / "manifest.parquet"
    write_manifest(df, path, stage="scan", params={}, root=str(root))
    return path


# rows:            0     1              2               3      4     5     6     7
STATUS = ["ok", "corrupt", "truncated", "ok", "ok", "ok", "ok", "ok"]
REPAIR = ["none", "unrecoverable", "recovered", "none", "none", "none", "none", "none"]
DETECT = ["ok", "not_decodable", "ok", "no_motorbike", "ok", "ok", "ok", "ok"]
DUP = [False, None, False, False, True, False, False, False]
CUT = [False, None, False, None, False, True, False, False]
BLUR = [False, None, False, None, True, False, True, False]
BUSY = [False, None, False, None, False, False, True, True]
EXPECTED = [None, "unreadable", None, "no_motorbike", "duplicate", "cut_off", "blur", "busy"]


@pytest.fixture
def staged(tmp_path):
    """A manifest with every stage's columns filled the way the stages would."""
    return make_manifest(
        tmp_path, 8, status=STATUS, repair_action=REPAIR, detect_status=DETECT,
        n_motorbikes=pd.array([1, None, 1, 0, 1, 1, 1, 1], dtype="Int32"),
        is_duplicate=pd.array(DUP, dtype="boolean"),
        dup_group=pd.array([None, None, None, None, 3, None, None, None], dtype="Int64"),
        cut_off_flag=pd.array(CUT, dtype="boolean"),
        blur_flag=pd.array(BLUR, dtype="boolean"),
        blur_score=np.linspace(0, 1, 8).astype("float32"),
        busy_flag=pd.array(BUSY, dtype="boolean"),
        busy_score=np.linspace(1, 0, 8).astype("float32"),
    )


def test_rules_reasons_counts_and_clean_manifest(staged, tmp_path):
    out = tmp_path / "out" / "clean.parquet"
    res = filter_manifest(staged, out)
    m = read_manifest(staged)
    assert [None if pd.isna(x) else x for x in m.df["reject_reason"]] == EXPECTED
    assert m.df["keep"].tolist() == [e is None for e in EXPECTED]
    assert (res.kept, res.total) == (2, 8)
    assert res.removed == {"unreadable": 1, "no_motorbike": 1, "duplicate": 1, "cut_off": 1,
                           "blur": 1, "busy": 1}
    clean = read_manifest(out)
    assert clean.df["sample_id"].tolist() == m.df["sample_id"][[0, 2]].tolist()
    assert clean.df["keep"].all()
    assert clean.root == m.root
    params = m.stage_params("filter")
    assert params["rules"] == ["unreadable", "detect_failed", "no_motorbike", "duplicate", "cut_off",
                               "blur", "busy"]
    assert params["disabled"] == [] and params["use_review"] is True
    assert clean.history[-1]["input_sha256"] is not None


def test_first_rule_in_registry_order_is_the_reason(tmp_path):
    # duplicate AND blurry AND busy: the registry order decides
    path = make_manifest(tmp_path, 2, is_duplicate=pd.array([True, False], dtype="boolean"),
                         blur_flag=pd.array([True, True], dtype="boolean"),
                         busy_flag=pd.array([True, True], dtype="boolean"))
    v = decide(read_manifest(path).df)
    assert v.reason == ["duplicate", "blur"]
    assert [list(np.flatnonzero(v.fired[k])) for k in ("duplicate", "blur", "busy")] == [[0], [0, 1], [0, 1]]


def test_reviewer_keep_restores_and_reject_excludes(tmp_path):
    decisions = ["keep", "reject", "keep", None, "reject"]
    path = make_manifest(
        tmp_path, 5,
        status=["ok", "ok", "corrupt", "ok", "ok"],
        blur_flag=pd.array([True, False, False, True, True], dtype="boolean"),
        review_decision=pd.array(decisions, dtype="string"),
        review_tags=[["keep"], ["reject"], ["keep"], [], ["reject", "other"]],
    )
    res = filter_manifest(path, tmp_path / "clean.parquet")
    df = read_manifest(path).df
    reasons = [None if pd.isna(x) else x for x in df["reject_reason"]]
    # 0: blurry but kept by the reviewer; 1: clean but rejected by the reviewer;
    # 2: a file that does not decode cannot be kept; 3: blurry, not reviewed; 4: both say reject
    assert reasons == [None, REVIEWER, "unreadable", "blur", "blur"]
    assert res.restored == 1
    assert res.removed == {"unreadable": 1, "blur": 2, REVIEWER: 1}
    assert read_manifest(tmp_path / "clean.parquet").df["sample_id"].tolist() == [df["sample_id"][0]]

    # --ignore-review: the rules alone
    res = filter_manifest(path, tmp_path / "clean.parquet", FilterOptions(use_review=False))
    assert res.kept == 1 and res.restored == 0
    assert read_manifest(path).df["keep"].tolist() == [False, True, False, False, False]


def test_scan_only_manifest(tmp_path):
    path = make_manifest(tmp_path, 4, status=["ok", "empty", "not_an_image", "ok"])
    assert [r.name for r in applicable_rules(read_manifest(path).df.columns)] == ["unreadable"]
    res = filter_manifest(path)   # default output beside the manifest
    assert res.out_path == path.parent / "clean.parquet"
    assert (res.kept, res.removed) == (2, {"unreadable": 2})


def test_cli_no_rule_table_and_params(staged, tmp_path, curate_cli):
    out = tmp_path / "clean.parquet"
    code, stdout, _ = curate_cli(["filter", "--manifest", str(staged), "-o", str(out),
                               "--no-rule", "busy", "--no-rule", "cut_off"])
    assert code == 0
    lines = dict((mt.group(1), int(mt.group(2))) for mt in
                 (re.match(r"\s+(.*?)\s{2,}(\d+)$", ln) for ln in stdout.splitlines()) if mt)
    assert "removed: busy background (busy)" not in lines
    assert lines["removed: blurry (blur)"] == 1
    assert lines["kept"] == 4 and lines["samples"] == 8
    m = read_manifest(staged)
    assert m.stage_params("filter")["disabled"] == ["busy", "cut_off"]
    assert len(read_manifest(out).df) == 4


def test_cli_unknown_rule_is_one_line_exit_2(staged, curate_cli):
    code, _, err = curate_cli(["filter", "--manifest", str(staged), "--no-rule", "sharpness"])
    assert code == 2
    assert err.strip().count("\n") == 0 and "--no-rule sharpness" in err and "blur" in err
    code, _, err = curate_cli(["filter", "--manifest", str(staged), "--no-rule", "reviewer"])
    assert code == 2 and "use --ignore-review" in err


def test_output_over_a_users_photo_is_refused(staged, tmp_path):
    photo = tmp_path / "image_0001.jpg"
    photo.write_bytes(b"\xff\xd8\xff a photo")
    photo.chmod(0o444)
    with pytest.raises(ManifestError, match="refusing to overwrite"):
        filter_manifest(staged, photo)
    assert photo.read_bytes() == b"\xff\xd8\xff a photo"
    root = Path(read_manifest(staged).root)
    with pytest.raises(UserError, match="inside the scanned folder"):     # the next scan would take it in
        filter_manifest(staged, root / "clean.parquet")
    assert not (root / "clean.parquet").exists()


def test_same_output_path_refused(staged):
    with pytest.raises(UserError, match="must differ"):
        filter_manifest(staged, staged)


def test_cache_paths_rebased_for_a_clean_manifest_elsewhere(tmp_path):
    path = make_manifest(tmp_path, 2)
    crop = path.parent / "cache" / "crops" / "ab" / "crop0.png"
    crop.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(crop)
    m = read_manifest(path)
    m.df["crop_path"] = pd.array(["cache/crops/ab/crop0.png", None], dtype="string")
    write_manifest(m, path, stage="detect")
    out = tmp_path / "elsewhere" / "deeper" / "clean.parquet"
    filter_manifest(path, out)
    clean = read_manifest(out)
    assert (out.parent / clean.df["crop_path"][0]).resolve() == crop.resolve()
    assert pd.isna(clean.df["crop_path"][1])
    # the input manifest itself is not rebased
    assert read_manifest(path).df["crop_path"][0] == "cache/crops/ab/crop0.png"


def test_filter_twice_gives_the_same_verdict(staged, tmp_path):
    a = filter_manifest(staged, tmp_path / "c.parquet")
    first = read_manifest(staged).df[["keep", "reject_reason"]].copy()
    b = filter_manifest(staged, tmp_path / "c.parquet")
    pd.testing.assert_frame_equal(first, read_manifest(staged).df[["keep", "reject_reason"]])
    assert (a.kept, a.removed) == (b.kept, b.removed)


def test_a_repaired_file_that_vanished_is_rejected(tmp_path):
    # status from the latest scan; the repaired copy in the cache must not keep a gone file alive
    path = make_manifest(tmp_path, 4, status=["ok", "unreadable", "truncated", "truncated"],
                         repair_action=["converted", "converted", "recovered", "unrecoverable"])
    v = decide(read_manifest(path).df)
    assert list(v.keep) == [True, False, True, False]
    assert v.reason[1] == v.reason[3] == "unreadable"


def test_a_flag_set_after_dedupe_on_the_keeper_keeps_the_next_copy(tmp_path):
    """`score --rethreshold` after dedupe flags the group's keeper: its copy that passes is kept
    instead (dedupe ranked the copies), so the photo is not lost altogether."""
    path = make_manifest(tmp_path, 4,
                         dup_group=pd.array([0, 0, 1, 1], dtype="Int64"),
                         dup_rank=pd.array([0, 1, 0, 1], dtype="Int32"),
                         dup_keeper=pd.array([True, False, True, False], dtype="boolean"),
                         is_duplicate=pd.array([False, True, False, True], dtype="boolean"),
                         dup_reason=pd.array(["kept: larger", "near duplicate", "kept: larger", "near duplicate"],
                                             dtype="string"),
                         aspect_flag=pd.array([True, False, True, True], dtype="boolean"))
    filter_manifest(path)
    rows = read_manifest(path).df.set_index("path")
    assert rows["keep"].tolist() == [False, True, False, False]
    assert rows["reject_reason"].fillna("-").tolist() == ["aspect", "-", "aspect", "duplicate"]
    # dedupe's columns follow the hand-over (group 1 lost both copies to aspect: unchanged)
    assert rows["dup_keeper"].tolist() == [False, True, True, False]
    assert rows["is_duplicate"].tolist() == [True, False, False, True]
    assert rows["dup_reason"].iloc[1].startswith("kept: ") and "rejected as aspect" in rows["dup_reason"].iloc[1]
    clean = read_manifest(path.parent / "clean.parquet").df
    assert clean["is_duplicate"].tolist() == [False] and clean["dup_keeper"].tolist() == [True]


def test_filter_says_which_rules_cannot_apply(tmp_path, caplog):
    path = make_manifest(tmp_path, 2)                             # a manifest straight from scan
    with caplog.at_level("WARNING", logger="curate.filter"):
        filter_manifest(path)
    assert "`curate detect` has not run" in caplog.text and "`curate score` has not run" in caplog.text
    m = read_manifest(path)
    m.df["busy_score"] = pd.array([0.1, 0.9], dtype="Float32")
    write_manifest(m, path, stage="score", params={"thresholds": {"busy": 0.5}})   # busy_flag lost
    caplog.clear()
    with caplog.at_level("WARNING", logger="curate.filter"):
        filter_manifest(path)
    assert "lacks busy_flag" in caplog.text
