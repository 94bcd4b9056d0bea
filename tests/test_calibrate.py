"""`curate calibrate`: thresholds fitted to the reviewer's own tags (stored scores only).

The fit is tested on a table (fast); the command end to end with tags made through FiftyOne in
another process, as the App makes them (slow: real embedded MongoDB).
"""
import numpy as np
import pandas as pd
import pytest

from curate.calibrate import MIN_TAGS, fit
from curate.filter import filter_manifest
from manifests import file_sha256, read_manifest, write_manifest
from common.errors import UserError

from .test_filter import make_manifest

N = 24
BLUR = np.linspace(0.0, 0.95, N).astype("float32")     # row i: blur score rising with i
DEFAULTS = {"blur": 0.8, "busy": 1.0}


def scored(tmp_path):
    """A scored manifest: every row has a motorbike; only the blur score differs."""
    path = make_manifest(tmp_path, N, detect_status=["ok"] * N,
                         n_motorbikes=pd.array([1] * N, dtype="Int32"),
                         blur_raw=BLUR * 100, blur_score=BLUR,
                         blur_flag=pd.array(BLUR >= DEFAULTS["blur"], dtype="boolean"),
                         busy_raw=np.full(N, 0.3, dtype="float32"), busy_score=np.full(N, 0.3, dtype="float32"),
                         busy_flag=pd.array([False] * N, dtype="boolean"))
    m = read_manifest(path)
    write_manifest(m, path, stage="score", params={"thresholds": dict(DEFAULTS), "set_thresholds": {}})
    return path


def reviewer_tags(df):
    """A reviewer stricter than the default: every photo scoring blur >= 0.5 is rejected."""
    return {sid: ("reject" if b >= 0.5 else "keep") for sid, b in zip(df["sample_id"], BLUR)}


def test_fit_moves_the_threshold_to_the_reviewer_and_agreement_up(tmp_path):
    df = read_manifest(scored(tmp_path)).df
    cal = fit(df, pd.Series(reviewer_tags(df)), DEFAULTS)
    assert BLUR[BLUR < 0.5].max() < cal.thresholds["blur"] <= BLUR[BLUR >= 0.5].min()
    assert "busy" not in cal.thresholds                   # nothing to win there: it stays
    assert cal.before[1] < 0.5 and cal.after == (1.0, 1.0)
    assert cal.balanced_after > cal.balanced_before
    blur = next(r for r in cal.rules if r.rule == "blur")
    assert blur.fired_after > blur.fired_before and blur.agree_after == blur.fired_after


def test_fit_leaves_thresholds_that_already_agree(tmp_path):
    df = read_manifest(scored(tmp_path)).df
    tags = {sid: ("reject" if b >= 0.8 else "keep") for sid, b in zip(df["sample_id"], BLUR)}
    assert fit(df, pd.Series(tags), DEFAULTS).thresholds == {}


def test_fit_does_not_move_on_a_gain_chance_would_give(tmp_path):
    """Below the default blur threshold the reviewer rejects about every other photo, at random: a
    lower threshold would win a few more tagged rejects than it loses keeps, which is noise."""
    n = 48
    blur = np.linspace(0.0, 0.95, n).astype("float32")
    path = make_manifest(tmp_path, n, detect_status=["ok"] * n, n_motorbikes=pd.array([1] * n, dtype="Int32"),
                         blur_raw=blur * 100, blur_score=blur,
                         blur_flag=pd.array(blur >= DEFAULTS["blur"], dtype="boolean"))
    df = read_manifest(path).df
    rng = np.random.default_rng(3)
    coin = rng.random(n) < 0.55
    tags = {sid: ("reject" if b >= 0.8 or (b >= 0.4 and c) else "keep")
            for sid, b, c in zip(df["sample_id"], blur, coin)}
    assert fit(df, pd.Series(tags), {"blur": 0.8}).thresholds == {}
    sure = {sid: ("reject" if b >= 0.4 else "keep") for sid, b in zip(df["sample_id"], blur)}
    assert 0.35 < fit(df, pd.Series(sure), {"blur": 0.8}).thresholds["blur"] <= 0.41


def test_fit_refuses_too_few_tags_or_one_kind(tmp_path):
    df = read_manifest(scored(tmp_path)).df
    few = dict(list(reviewer_tags(df).items())[: MIN_TAGS - 1])
    with pytest.raises(UserError, match="at least"):
        fit(df, pd.Series(few), DEFAULTS)
    only_keep = {sid: "keep" for sid in df["sample_id"]}
    with pytest.raises(UserError, match="0 reject"):
        fit(df, pd.Series(only_keep), DEFAULTS)


def reviewed(tmp_path, curate_cli, tags_of):
    """A scored manifest with its review dataset, tagged in another process (as the App does)."""
    pytest.importorskip("fiftyone", reason="fiftyone is needed for review")
    from curate.review import dataset_name

    from .test_review import tag_in_other_process

    path = scored(tmp_path)
    code, _, err = curate_cli(["review", "--manifest", str(path), "--no-launch"])
    assert code == 0, err
    tag_in_other_process(dataset_name(path), tags_of(read_manifest(path).df))
    return path


@pytest.mark.slow
def test_calibrate_from_tags_made_in_the_app(tmp_path, curate_cli):
    path = reviewed(tmp_path, curate_cli, lambda df: {sid: [t] for sid, t in reviewer_tags(df).items()})

    before = file_sha256(path)
    code, out, err = curate_cli(["calibrate", "--manifest", str(path), "--dry-run"])
    assert code == 0, err
    assert "dry run: nothing written" in out and "blur" in out
    assert file_sha256(path) == before                    # --dry-run writes nothing

    filter_manifest(path, tmp_path / "before.parquet")
    kept_before = int(read_manifest(path).df["keep"].sum())
    code, out, err = curate_cli(["calibrate", "--manifest", str(path)])
    assert code == 0, err
    assert "recorded blur=" in out
    params = read_manifest(path).stage_params("score")
    assert BLUR[BLUR < 0.5].max() < params["thresholds"]["blur"] <= BLUR[BLUR >= 0.5].min()
    assert "blur" in params["set_thresholds"]
    # the filter now agrees with the reviewer without their tags
    from curate.filter import FilterOptions

    filter_manifest(path, tmp_path / "after.parquet", FilterOptions(use_review=False))
    after = read_manifest(path).df
    want_keep = [t == "keep" for t in after["sample_id"].map(reviewer_tags(after))]
    assert after["keep"].tolist() == want_keep
    assert int(after["keep"].sum()) < kept_before


@pytest.mark.slow
def test_calibrate_refuses_a_handful_of_tags_in_one_line(tmp_path, curate_cli):
    path = reviewed(tmp_path, curate_cli, lambda df: {df["sample_id"].iloc[0]: ["keep"],
                                                      df["sample_id"].iloc[-1]: ["reject"]})
    before = file_sha256(path)
    code, out, err = curate_cli(["calibrate", "--manifest", str(path)])
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip() and "MongoDB" not in line]
    assert len(lines) == 1 and "at least" in lines[0] and "1 keep, 1 reject" in lines[0]
    assert file_sha256(path) == before


def test_a_copy_rejected_as_duplicate_is_not_a_disagreement(tmp_path):
    """A tag is about the picture: a duplicate tagged keep (its group's keeper is kept) is no reject."""
    m = read_manifest(scored(tmp_path))
    df = m.df
    df["is_duplicate"] = pd.array([i == 0 for i in range(N)], dtype="boolean")
    df["dup_group"] = pd.array([1 if i in (0, 1) else None for i in range(N)], dtype="Int64")
    df["dup_rank"] = pd.array([1 if i == 0 else (0 if i == 1 else None) for i in range(N)], dtype="Int32")
    tags = {sid: ("reject" if b >= 0.8 else "keep") for sid, b in zip(df["sample_id"], BLUR)}
    cal = fit(df, pd.Series(tags), DEFAULTS)
    assert cal.before == (1.0, 1.0) and cal.thresholds == {}
    assert "duplicate" not in {r.rule for r in cal.rules}
