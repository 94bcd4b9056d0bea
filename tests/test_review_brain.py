"""`curate review` opens with the FiftyOne Brain computed from our own embeddings: uniqueness, the
embeddings map, a similarity index and saved views of the odd bikes and each cluster, with no
model download and no connection out of this machine."""
import socket
import subprocess
import sys

import numpy as np
import pytest

from manifests import read_manifest
from tests.test_review import build_review_manifest

pytestmark = pytest.mark.slow

CURATE = [sys.executable, "-c", "from curate.cli import main; main()"]


@pytest.fixture
def embedded(tmp_path, caltech):
    m = build_review_manifest(tmp_path, caltech, n_real=6)
    for args in (["embed", "--manifest", str(m), "--no-progress"], ["cluster", "--manifest", str(m), "--clusters", "2"]):
        r = subprocess.run([*CURATE, *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    return m


@pytest.fixture
def offline(monkeypatch):
    """Every connection to anything but this machine is refused and recorded; so is a zoo model."""
    tried = []
    real = socket.socket.connect

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
            tried.append(address)
            raise OSError("network disabled in this test")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    import fiftyone.zoo as foz

    def no_zoo(*a, **k):
        tried.append(("zoo", a))
        raise RuntimeError("no zoo model in this test")

    monkeypatch.setattr(foz, "load_zoo_model", no_zoo)
    return tried


def test_review_brain_runs_from_our_embeddings_offline(embedded, offline):
    from curate.review import VIEWS_KEY, build_dataset
    from curate.review_brain import ODD_VIEW, SIMILARITY, VISUALIZATION

    df = read_manifest(embedded).df
    have = df[df["embedding"].map(lambda v: v is not None and len(v) > 0)]
    assert len(have) == 8                     # 6 photos and 2 generated; the corrupt file has none
    ds = build_dataset(embedded, progress=False)
    assert offline == []
    assert set(ds.list_brain_runs()) >= {VISUALIZATION, SIMILARITY}
    uniq = dict(zip(*ds.values(["sample_id", "uniqueness"])))
    assert all(0 <= uniq[s] <= 1 for s in have["sample_id"])
    assert sum(v is not None for v in uniq.values()) == len(have)
    points = ds.load_brain_results(VISUALIZATION).points
    assert points.shape == (len(have), 2) and np.isfinite(points).all()

    # "more like this": the nearest sample to a photo is the photo itself, then by our vectors' cosine
    sid = str(have["sample_id"].iloc[0])
    query = ds.match({"sample_id": sid}).first()
    near = ds.sort_by_similarity(query.id, k=3, brain_key=SIMILARITY)
    got = near.values("sample_id")
    vec = {s: np.asarray(e) for s, e in zip(have["sample_id"], have["embedding"])}
    want = sorted(vec, key=lambda s: -float(vec[s] @ vec[sid]))[:3]
    assert got[0] == sid and got == want

    views = ds.info[VIEWS_KEY]
    assert ODD_VIEW in views and {"cluster 0", "cluster 1"} <= set(views)
    for c in (0, 1):
        assert len(ds.load_saved_view(f"cluster {c}")) == int((df["cluster"] == c).sum())
    odd = ds.load_saved_view(ODD_VIEW).values("outlier_rank")
    assert odd and odd == sorted(odd, reverse=True) and min(odd) >= 0.95

    again = build_dataset(embedded, progress=False)     # a second review replaces the runs
    assert set(again.list_brain_runs()) >= {VISUALIZATION, SIMILARITY} and offline == []
