"""`curate cluster` and the report's embedding sections: the kinds of a folder come out as clusters,
largest first, the small one named; same manifest, same clusters; one-line refusals; the report's
odd-bikes sheet, cluster strips and maps exist and every picture it links exists."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from manifests import read_manifest, write_manifest
from tests.test_report import check_links, parse

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


def _kinds(folder: Path, sizes: dict[str, tuple[tuple[int, int, int], int]]) -> Path:
    """Photos of a few kinds: a base colour with noise, `n` of each."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, (rgb, n) in sizes.items():
        for i in range(n):
            a = np.clip(np.array(rgb) + rng.normal(0, 18, (90, 120, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(folder / f"{name}_{i:02d}.png")
    return folder


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CURATE, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def embedded(tmp_path) -> Path:
    photos = _kinds(tmp_path / "photos", {"red": ((200, 30, 30), 12), "green": ((30, 180, 40), 8),
                                          "blue": ((30, 40, 200), 3)})
    m = tmp_path / "work" / "manifest.parquet"
    for args in (["scan", str(photos), "-o", str(m)], ["embed", "--manifest", str(m)]):
        assert _run(*args, "--no-progress").returncode == 0
    return m


def test_clusters_follow_the_kinds_largest_first_and_name_the_small_one(embedded):
    r = _run("cluster", "--manifest", str(embedded), "--clusters", "3")
    assert r.returncode == 0, r.stderr
    df = read_manifest(embedded).df
    kind = df["path"].str.split("_").str[0]
    by_kind = df.groupby(kind)["cluster"].agg(lambda s: sorted(set(s)))
    assert by_kind.to_dict() == {"red": [0], "green": [1], "blue": [2]}
    p = read_manifest(embedded).stage_params("cluster")
    assert p["sizes"] == {"0": 12, "1": 8, "2": 3} and p["small"] == [2] and p["fitted_on"] == 23
    assert "cluster   2:      3  (small)" in r.stdout
    assert df["map_x"].notna().all() and df["map_y"].notna().all()
    first = df[["sample_id", "cluster", "map_x", "map_y"]].copy()
    assert _run("cluster", "--manifest", str(embedded), "--clusters", "3").returncode == 0
    again = read_manifest(embedded).df[["sample_id", "cluster", "map_x", "map_y"]]
    pd.testing.assert_frame_equal(first.reset_index(drop=True), again.reset_index(drop=True))


def test_clusters_are_fitted_on_the_kept_and_rejects_get_the_nearest(embedded):
    m = read_manifest(embedded)
    df = m.df
    df["keep"] = pd.array(~df["path"].str.startswith("blue"), dtype="boolean")   # the blue ones rejected
    write_manifest(m, embedded, stage="filter", params={}, input_path=embedded)
    assert _run("cluster", "--manifest", str(embedded), "--clusters", "2").returncode == 0
    out = read_manifest(embedded)
    assert out.stage_params("cluster")["fitted_on"] == 20
    assert out.df["cluster"].notna().all()          # the rejects too, by their nearest centre


@pytest.mark.parametrize("prepare, message", [
    ("no_embed", "no embeddings; run `curate embed"),
    ("few_kept", "clusters need at least 4"),
])
def test_cluster_refusals_are_one_line_and_write_nothing(tmp_path, embedded, prepare, message):
    target = embedded
    if prepare == "no_embed":
        target = tmp_path / "bare" / "manifest.parquet"
        assert _run("scan", str(tmp_path / "photos"), "-o", str(target), "--no-progress").returncode == 0
    else:
        m = read_manifest(embedded)
        m.df["keep"] = pd.array([i < 3 for i in range(len(m.df))], dtype="boolean")
        write_manifest(m, embedded, stage="filter", params={}, input_path=embedded)
    before = target.read_bytes()
    r = _run("cluster", "--manifest", str(target))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    assert target.read_bytes() == before
    assert _run("cluster", "--manifest", str(target), "--clusters", "1").returncode == 2


def test_report_shows_odd_bikes_clusters_and_maps(tmp_path, embedded):
    assert _run("cluster", "--manifest", str(embedded), "--clusters", "3").returncode == 0
    out = tmp_path / "report"
    assert _run("report", "--manifest", str(embedded), "-o", str(out)).returncode == 0
    index = out / "index.html"
    page = parse(index)
    check_links(index, page)
    for name in ("sheet_odd_bikes.png", "map_clusters.png", "map_reasons.png",
                 *(f"strip_cluster_{c}.png" for c in range(3))):
        assert name in page.images, name
    text = index.read_text()
    assert "Small clusters" in text and "<b>2</b>" in text and 'id="odd"' in text
