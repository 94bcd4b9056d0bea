"""gan.metrics and `gan fid`: reference values for FID/KID/MiFID, a random-init Inception end to end,
fail-fast without weights, the weightless metrics (C2ST, memorisation) and the CLI."""
from __future__ import annotations

import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gan import metrics as M  # noqa: E402
from gan.metrics import inception as inc  # noqa: E402
from gan.metrics import stats as S  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty torch hub cache and a record of every network connection attempt (all refused)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


def _images(seed: int, n: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _smooth(seed: int, n: int, size: int = 32) -> np.ndarray:
    """Distinct natural-ish images: upsampled low-resolution colour noise."""
    low = np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 3)).astype(np.uint8)
    return np.repeat(np.repeat(low, size // 4, axis=1), size // 4, axis=2)


# ---------------------------------------------------------------- FID / KID / MiFID on known values

def test_frechet_distance_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(1)
    d = 64
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    got = S.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-10)
    assert S.frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_equals_scipy_sqrtm_reference_on_full_covariances():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    d = 40
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T / d + 0.1 * np.eye(d), b @ b.T / d + 0.05 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 2
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert S.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
    assert S.frechet_distance(mu1, s1, mu2, s2, device="cpu") == pytest.approx(ref, rel=1e-9)  # the torch route


def test_fid_from_few_feature_rows_equals_the_statistics_route_and_torchmetrics():
    fid_mod = pytest.importorskip("torchmetrics.image.fid")
    rng = np.random.default_rng(3)
    f1 = rng.normal(size=(30, 128))
    f2 = rng.normal(size=(45, 128)) * 1.5 + 0.3
    a, b = S.feature_stats(f1), S.feature_stats(f2)
    via_stats = S.fid_from_stats(a, b)
    via_rows = S.frechet_distance_features(f1, f2)  # rank-deficient covariances: the nuclear-norm route
    ref = float(fid_mod._compute_fid(torch.from_numpy(a.mu), torch.from_numpy(a.sigma),
                                     torch.from_numpy(b.mu), torch.from_numpy(b.sigma)))
    assert via_rows == pytest.approx(via_stats, rel=1e-7)
    assert via_rows == pytest.approx(ref, rel=1e-5)
    assert via_rows > 0


def _kid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, written as plain loops."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return sxx + syy - 2 * sxy


def test_kid_equals_a_loop_reference_of_unbiased_polynomial_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(25, 8)), rng.normal(size=(25, 8)) + 0.5
    ref = _kid_reference(x, y)
    assert S.mmd2_unbiased(x, y) == pytest.approx(ref, rel=1e-10)
    # one subset holding every row is a permutation of all rows: the same value, zero spread
    mean, std = S.kid(x, y, subsets=3, subset_size=25, seed=7)
    assert mean == pytest.approx(ref, rel=1e-10) and std == pytest.approx(0, abs=1e-12)
    # subsets of 10: every subset value is an MMD^2 of 10 + 10 rows; same seed, same answer
    m1, s1 = S.kid(x, y, subsets=20, subset_size=10, seed=1)
    assert (m1, s1) == S.kid(x, y, subsets=20, subset_size=10, seed=1)
    assert s1 > 0 and m1 > 0
    # the torch route (used on GPUs) draws the same subsets and gives the same values
    assert S.kid(x, y, subsets=20, subset_size=10, seed=1, device="cpu") == pytest.approx((m1, s1), rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(5)
    same = S.kid(rng.normal(size=(300, 16)), rng.normal(size=(300, 16)), subsets=20, subset_size=100)[0]
    diff = S.kid(rng.normal(size=(300, 16)), rng.normal(size=(300, 16)) + 1, subsets=20, subset_size=100)[0]
    assert abs(same) < 0.01 < diff


def test_mifid_formula_on_constructed_features():
    mifid_mod = pytest.importorskip("torchmetrics.image.mifid")
    rng = np.random.default_rng(6)
    real = np.abs(rng.normal(size=(50, 32)))
    copies = real[:20] * 1.01 + 0.001 * rng.random((20, 32))  # near-copies: cosine distance ~ 0
    fresh = np.abs(rng.normal(size=(20, 32)))

    d_copy = S.memorisation_distance(copies, real)
    d_fresh = S.memorisation_distance(fresh, real)
    assert d_copy < 1e-4 < S.MIFID_EPS < d_fresh
    ref_fresh = float(mifid_mod._compute_cosine_distance(torch.from_numpy(fresh), torch.from_numpy(real), 1.0))
    assert d_fresh == pytest.approx(ref_fresh, rel=1e-9)
    assert S.memorisation_distance(fresh, real, device="cpu") == pytest.approx(d_fresh, rel=1e-12)

    assert S.mifid(12.5, d_fresh) == pytest.approx(12.5)  # d >= 0.1: no penalty
    assert S.mifid(12.5, d_copy) == pytest.approx(12.5 / d_copy)  # memorised: FID / d
    assert S.mifid(12.5, 0.05) == pytest.approx(250.0)
    # the whole registry step equals torchmetrics' MiFID on the same features
    fake_fs, real_fs = M.FeatureSet(copies), M.FeatureSet(real)
    ours = M.METRICS["mifid"].fn(fake_fs, real_fs, M.Context(M.EvalOptions()))["mifid"]
    ref = float(mifid_mod._mifid_compute(
        torch.from_numpy(fake_fs.stats.mu), torch.from_numpy(fake_fs.stats.sigma), torch.from_numpy(copies),
        torch.from_numpy(real_fs.stats.mu), torch.from_numpy(real_fs.stats.sigma), torch.from_numpy(real)))
    assert ours == pytest.approx(ref, rel=1e-5)


def test_feature_cache_round_trip_is_atomic_and_exact(tmp_path):
    f = np.random.default_rng(8).normal(size=(10, 6)).astype(np.float32).astype(np.float64)
    cache = S.FeatureCache(tmp_path / "c")
    key = S.content_key("manifest-hash", "weights-id")
    assert cache.load(key) is None
    p = cache.save(key, f, S.feature_stats(f))
    assert p.parent.parent == tmp_path / "c" and not list(p.parent.glob(".tmp-*"))
    got, st = cache.load(key)
    assert np.array_equal(got, f) and np.allclose(st.sigma, np.cov(f, rowvar=False))
    assert S.content_key("manifest-hash", "other-weights") != key


# ---------------------------------------------------------------- Inception features

def test_feature_extraction_is_batch_size_invariant():
    w = inc.resolve_weights(inc.RANDOM)
    imgs = _images(0, 4, 40)
    f4 = inc.extract_features(imgs, w, batch_size=4)
    f1 = inc.extract_features(imgs, w, batch_size=1)
    f3 = inc.extract_features(imgs, w, batch_size=3)
    assert f4.shape == (4, 2048) and np.isfinite(f4).all() and f4.std() > 0
    np.testing.assert_allclose(f1, f4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f3, f4, rtol=1e-5, atol=1e-6)


def test_weights_file_loads_with_weights_only_and_from_the_hub_cache(tmp_path, monkeypatch, no_weights):
    """A state dict saved to disk (as torch-fidelity/pytorch-fid ship them) is found and reproduces the net."""
    random_w = inc.resolve_weights(inc.RANDOM)
    sd = inc.build_extractor(random_w).state_dict()
    # pytorch-fid style: no BatchNorm `num_batches_tracked` entries
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    ckpt = tmp_path / "torch-home" / "hub" / "checkpoints" / inc.PYTORCH_FID_FILENAME
    ckpt.parent.mkdir(parents=True)
    torch.save(sd, ckpt)
    monkeypatch.setenv("MOTOCURATE_OFFLINE", "1")
    w = inc.resolve_weights(None)
    assert w.path == ckpt.resolve() and w.identity.startswith("sha256:")
    assert inc.resolve_weights(ckpt) == w
    imgs = _images(1, 2, 24)
    np.testing.assert_allclose(inc.extract_features(imgs, w), inc.extract_features(imgs, random_w), rtol=1e-6)
    assert no_weights == []


def test_a_weights_file_of_another_network_is_one_clear_error(tmp_path):
    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    w = inc.resolve_weights(bad)
    with pytest.raises(M.InceptionUnavailable, match="not the FID Inception v3"):
        inc.build_extractor(w)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(M.InceptionUnavailable, match="not a PyTorch weights file"):
        inc.build_extractor(inc.resolve_weights(junk))


def test_offline_without_weights_raises_and_never_touches_the_network(monkeypatch, no_weights):
    monkeypatch.setenv("MOTOCURATE_OFFLINE", "1")
    with pytest.raises(M.InceptionUnavailable) as e:
        M.evaluate(_images(0, 4), _images(1, 4))
    msg = str(e.value)
    assert "\n" not in msg and "--inception-weights" in msg and inc.WEIGHTS_FILENAME in msg
    assert no_weights == []  # no probe, no download
    assert isinstance(e.value, M.UserError)
    assert not M.inception_available()


def test_unreachable_host_without_offline_flag_fails_after_one_probe(monkeypatch, no_weights):
    for k in inc.OFFLINE_ENV:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(M.InceptionUnavailable, match="cannot be reached"):
        inc.resolve_weights(None)
    assert len(no_weights) == 1  # the quick probe; the download was never started


def test_without_torch_fidelity_fid_is_unavailable_not_a_crash(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "torch_fidelity" else real_find_spec(name, *a, **k))
    with pytest.raises(M.InceptionUnavailable, match="pip install torch-fidelity"):
        M.evaluate(_images(0, 4), _images(1, 4), inception_weights="random")


def test_missing_weights_path_names_the_flag(tmp_path):
    with pytest.raises(M.InceptionUnavailable, match=r"--inception-weights .*nope\.pth: no such file"):
        M.evaluate(_images(0, 4), _images(1, 4), inception_weights=tmp_path / "nope.pth")


@pytest.mark.slow
def test_evaluate_end_to_end_with_random_inception_and_the_reference_cache(tmp_path, monkeypatch):
    real, fake = _smooth(0, 6), _images(1, 6)
    opts = M.EvalOptions(kid_subsets=5)
    M._MEMO.clear()
    same = M.evaluate(real, real, inception_weights="random", cache_dir=tmp_path, cache_key="manifest-A", opts=opts)
    assert same["fid"] == pytest.approx(0, abs=1e-6)
    assert list(tmp_path.rglob("*.npz"))  # reference statistics cached on disk

    calls = []
    real_extract = inc.extract_features
    monkeypatch.setattr(inc, "extract_features", lambda imgs, *a, **k: calls.append(len(imgs)) or real_extract(imgs, *a, **k))
    M._MEMO.clear()  # force the disk cache
    out = M.evaluate(fake, real, inception_weights="random", cache_dir=tmp_path, cache_key="manifest-A", opts=opts)
    assert calls == [6]  # only the generated images went through the network
    assert set(out) >= {"fid", "kid", "kid_std", "mifid", "mifid_distance", "n_fake", "n_real"}
    assert all(np.isfinite(v) for v in out.values())
    assert out["fid"] > same["fid"] + 1e-6 and out["mifid"] >= out["fid"]

    out2 = M.evaluate(fake, real, metrics=("fid",), inception_weights="random", cache_key="manifest-A", opts=opts)
    assert calls == [6, 6] and out2["fid"] == pytest.approx(out["fid"], rel=1e-9)  # in-memory reference

    with pytest.raises(M.UserError, match="choose from fid,kid,mifid"):
        M.evaluate(fake, real, metrics=("fid", "is"), inception_weights="random")
    with pytest.raises(M.UserError, match="expected uint8"):
        M.evaluate(fake.astype(np.float32), real, inception_weights="random")


# ---------------------------------------------------------------- weightless metrics

def test_c2st_is_chance_for_one_distribution_and_near_one_for_two():
    from gan.metrics.c2st import C2STOptions, c2st

    a, b = _images(10, 160, 32), _images(11, 160, 32)
    same = c2st(a, b, seed=0)["c2st_acc"]
    assert 0.35 <= same <= 0.65

    flat = np.repeat(np.repeat(np.random.default_rng(12).integers(0, 256, (160, 1, 1, 3), dtype=np.uint8), 32, 1), 32, 2)
    diff = c2st(a, flat, seed=0)
    assert diff["c2st_acc"] >= 0.95 and diff["c2st_score"] >= 0.9
    quick = C2STOptions(steps=20)
    assert c2st(a[:40], flat[:40], seed=3, opts=quick) == c2st(a[:40], flat[:40], seed=3, opts=quick)  # seeded


def test_memorisation_flags_copies_of_training_images_and_not_fresh_ones():
    from gan.metrics.memorisation import memorisation

    train = _smooth(20, 300)
    rng = np.random.default_rng(21)
    copies = train[rng.choice(300, 60, replace=False)].copy()
    copies[::2] = copies[::2, :, ::-1]  # half of them mirrored, as flip augmentation would
    fresh = _smooth(22, 60)
    got_copies = memorisation(copies, train)
    got_fresh = memorisation(fresh, train)
    assert got_copies["memo_copy_frac"] == 1.0 and got_copies["memo_flag"] == 1.0
    assert got_copies["memo_nn_ratio"] == pytest.approx(0, abs=1e-6)
    assert got_fresh["memo_copy_frac"] <= 0.05 and got_fresh["memo_flag"] == 0.0
    assert 0.7 < got_fresh["memo_nn_ratio"] < 1.5
    assert got_fresh["memo_copy_frac_train"] <= 0.05
    noise = memorisation(_images(23, 60), train)
    assert noise["memo_nn_ratio"] > 1.2 and noise["memo_flag"] == 0.0


@pytest.mark.slow
def test_weightless_metrics_on_real_photos(caltech):
    """Two halves of the Caltech-101 motorbikes are indistinguishable and not copies of each other;
    copies of training photos are flagged; flat colour cards are told apart from photos."""
    from PIL import Image

    files = sorted(caltech.glob("*.jpg"))[:400]
    if len(files) < 400:
        pytest.skip(f"need 400 Caltech photos, found {len(files)}")
    arr = np.stack([np.asarray(Image.open(f).convert("RGB").resize((64, 64), Image.BILINEAR)) for f in files])
    perm = np.random.default_rng(0).permutation(len(arr))
    train, held_out = arr[perm[:200]], arr[perm[200:]]
    halves = M.weightless_metrics(held_out, train, seed=0)
    assert 0.35 <= halves["c2st_acc"] <= 0.65
    assert halves["memo_flag"] == 0.0 and 0.7 < halves["memo_nn_ratio"] < 1.3
    copies = M.weightless_metrics(train[:100], train, seed=0, which=("memorisation",))
    assert copies["memo_copy_frac"] == 1.0 and copies["memo_flag"] == 1.0
    cards = np.broadcast_to(held_out.mean(axis=(1, 2), keepdims=True).astype(np.uint8), held_out.shape).copy()
    assert M.weightless_metrics(cards, train, seed=0, which=("c2st",))["c2st_acc"] >= 0.9


def test_weightless_metrics_returns_both_families():
    out = M.weightless_metrics(_images(30, 40), _smooth(31, 40), seed=0)
    assert {"c2st_acc", "memo_copy_frac", "memo_copy_frac_train", "memo_nn_ratio", "memo_flag"} <= set(out)
    assert out["c2st_acc"] >= 0.9
