"""Headless Chromium opens the FiftyOne App of a review dataset and sees the samples.

Needs Debian's `chromium` (apt-get install -y chromium); skips where it is missing or cannot start.
"""
import json
import shutil
import socket
import struct
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from manifests import file_sha256, read_manifest, sample_id, write_manifest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip("headless Chromium not installed (apt-get install -y chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_manifest(tmp_path: Path, shared_data: Path) -> Path:
    """A scan-style manifest over real photos from ../shared/data (read in place, never copied)."""
    root = shared_data / "motorbikes"
    files = sorted((root / "caltech101").glob("*.jpg"))[:8] + sorted((root / "cctv").glob("*.jpg"))[:4]
    if len(files) < 12:
        pytest.skip(f"fewer than 12 photos under {root}")
    rows = []
    for p in files:
        rel = p.relative_to(root).as_posix()
        sha = file_sha256(p)
        with Image.open(p) as im:
            w, h = im.size
        rows.append({"sample_id": sample_id(sha, rel, 0), "path": rel, "crop_index": 0, "status": "ok",
                     "sha256": sha, "width": w, "height": h, "detect_status": "ok",
                     "detections": [{"label": "motorcycle", "conf": 0.9, "x0": w * 0.1, "y0": h * 0.1,
                                     "x1": w * 0.9, "y1": h * 0.9}]})
    df = pd.DataFrame(rows)
    df["width"] = pd.array(df["width"], dtype="Int32")
    df["height"] = pd.array(df["height"], dtype="Int32")
    df["blur_score"] = np.linspace(0, 1, len(df)).astype("float32")
    df["blur_flag"] = pd.array(df["blur_score"] > 0.8, dtype="boolean")
    path = tmp_path / "work" / "manifest.parquet"
    write_manifest(df, path, stage="score", params={}, root=str(root))
    return path


def _load(chromium: str, url: str, tmp_path: Path, shot: Path, budget_ms: int) -> str:
    """The page's DOM after `budget_ms` of virtual time; a screenshot goes to `shot`."""
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / f'chromium-{budget_ms}'}",
           "--window-size=1400,1400", f"--virtual-time-budget={budget_ms}", f"--screenshot={shot}",
           "--dump-dom", url]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"headless Chromium cannot run: {exc}")
    if not run.stdout.strip():
        tail = [ln for ln in run.stderr.splitlines() if "dbus" not in ln][-3:]
        pytest.skip(f"headless Chromium could not load the page (rc {run.returncode}): {' | '.join(tail)}")
    return run.stdout


def _post(url: str, body: dict) -> bytes:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=60).read()


def _embeddings_panel_is_served(url: str, name: str, n: int) -> None:
    """The routes the App's embeddings panel loads its plot from serve our map: run info, then the
    points as float32 columns behind a small header (magic, version, dtype, width, n, flags)."""
    from curate.review_brain import VISUALIZATION

    body = {"datasetName": name, "brainKey": VISUALIZATION}
    info = json.loads(_post(f"{url}embeddings/v2/run-info", body))
    assert (info["n"], info["dims"], info["method"]) == (n, 2, "pca"), info
    raw = _post(f"{url}embeddings/v2/geometry", body)
    magic, _, _, width, count, _ = struct.unpack("<IHBBII", raw[:16])
    assert (magic, width, count) == (0x464F4531, 2, n)
    xy = np.frombuffer(raw[16:], dtype="<f4")
    assert len(xy) == 2 * n and np.isfinite(xy).all() and xy.std() > 0


def test_app_shows_the_samples(tmp_path, shared_data):
    """The App for a review dataset of real photos shows every sample, thumbnails drawn, and serves
    the embeddings panel's map."""
    chromium = _chromium()
    from curate.review import ReviewOptions, app_url, build_dataset, dataset_name, launch

    manifest = shared_manifest(tmp_path, shared_data)
    for args in (["embed", "--manifest", str(manifest), "--no-progress"],
                 ["cluster", "--manifest", str(manifest), "--clusters", "2"]):
        subprocess.run([sys.executable, "-c", "from curate.cli import main; main()", *args], check=True,
                       capture_output=True, timeout=300)
    m = read_manifest(manifest)
    n = len(m.df)
    opts = ReviewOptions(port=_free_port())
    url = app_url(opts)
    session = launch(build_dataset(manifest, progress=False), opts)
    try:
        # the media endpoint the page loads thumbnails from serves the real file
        first = Path(m.root) / m.df["path"][0]
        media = f"{url}media?filepath={urllib.parse.quote(str(first))}"
        assert urllib.request.urlopen(media, timeout=30).read() == first.read_bytes()
        _embeddings_panel_is_served(url, dataset_name(manifest), n)

        shot = tmp_path / "app.png"
        for budget in (20_000, 45_000, 90_000):     # a loaded machine needs longer
            dom = _load(chromium, url, tmp_path, shot, budget)
            if dom.count('canvas-loaded="true"') >= n:
                break
        assert dataset_name(manifest) in dom
        assert dom.count('data-cy="looker"') == n, "the grid does not show every sample"
        assert dom.count('canvas-loaded="true"') == n, "not every thumbnail was drawn"
        with Image.open(shot) as im:
            assert im.size == (1400, 1400)
            pixels = np.asarray(im.convert("L"), dtype=float)
        assert pixels.std() > 10          # a rendered page, not a blank one
    finally:
        session.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)
