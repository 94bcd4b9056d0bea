"""Pure steps: features -> statistics -> metric, and a cache of reference features/statistics.

- FID (Heusel et al. 2017): ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)). The trace of the matrix
  square root is computed as sum(sqrt(eig(A S2 A))) with A = S1^(1/2) from a symmetric eigendecomposition:
  A S2 A is symmetric PSD and similar to S1 S2, so its eigenvalues are real and clipped at 0. This avoids
  the complex/`sqrtm` failure modes of the usual recipe on rank-deficient covariances (fewer samples than
  2048 dimensions) and agrees with it (and with scipy's `sqrtm`) where that one is well defined.
- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
  averaged over `subsets` random subsets of `subset_size` samples per side (torch-fidelity's defaults:
  100 subsets of 1000), reported with its standard deviation over subsets.
- MiFID (Bai et al. 2021, "On Training Sample Memorization", the Kaggle "Generative Dog Images" metric):
  d = mean over generated features of the minimum cosine distance 1 - |cos(f_g, f_t)| to any training
  feature (all-zero rows dropped, as in Kaggle's scorer); d_thr = d if d < epsilon (0.1) else 1;
  MiFID = FID / (d_thr + 1e-14). So it equals FID unless generated images sit, on average, closer than
  0.1 in cosine distance to training images, in which case FID is divided by that small distance.
  This matches the Kaggle evaluation code and torchmetrics' `MemorizationInformedFrechetInceptionDistance`.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_path

log = logging.getLogger(__name__)

MIFID_EPS = 0.1
MIFID_FID_EPS = 1e-14
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
CACHE_VERSION = 1


@dataclass(frozen=True)
class Stats:
    """Gaussian statistics of a feature set (float64)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def feature_stats(features: np.ndarray) -> Stats:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature rows of shape (N, D), got {f.shape}")
    return Stats(f.mean(axis=0), np.cov(f, rowvar=False), len(f))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2, *, device: str | None = None) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring).

    With `device` the two eigendecompositions run in float64 torch on that device (e.g. a GPU).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    if device is None:
        a = _psd_sqrt(s1)
        m = a @ ((s2 + s2.T) / 2) @ a
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    else:
        import torch

        t1, t2 = (torch.as_tensor(x, device=device) for x in (s1, s2))
        w, v = torch.linalg.eigh((t1 + t1.T) / 2)
        a = (v * w.clamp(min=0).sqrt()) @ v.T
        m = a @ ((t2 + t2.T) / 2) @ a
        tr_covmean = float(torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid_from_stats(a: Stats, b: Stats, *, device: str | None = None) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, device=device)


def frechet_distance_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """The same Fréchet distance from the feature rows, exact and cheap when a set has fewer rows than dims.

    With A_i the centred rows / sqrt(n_i - 1), S_i = A_i^T A_i, and the non-zero eigenvalues of S1 S2 are
    those of M M^T with M = A2 A1^T (n2 x n1), so Tr((S1 S2)^(1/2)) is the nuclear norm of M.
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    d = f1.shape[1]
    if min(len(f1), len(f2)) >= d:
        return fid_from_stats(feature_stats(f1), feature_stats(f2))
    if len(f1) < 2 or len(f2) < 2 or f2.shape[1] != d:
        raise ValueError(f"need two feature sets of shape (N>=2, D), got {f1.shape} and {f2.shape}")
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a1 = (f1 - mu1) / np.sqrt(len(f1) - 1)
    a2 = (f2 - mu2) / np.sqrt(len(f2) - 1)
    nuclear = np.linalg.svd(a2 @ a1.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2 * nuclear)


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, *, degree: int = 3, gamma: float | None = None,
                  coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between two equally sized samples with the polynomial kernel."""
    m = len(x)
    if len(y) != m or m < 2:
        raise ValueError(f"need two samples of equal size >= 2, got {len(x)} and {len(y)}")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    kxx = _poly_kernel(x, x, degree, gamma, coef0)
    kyy = _poly_kernel(y, y, degree, gamma, coef0)
    kxy = _poly_kernel(x, y, degree, gamma, coef0)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def _mmd2_torch(x, y, degree: int, gamma: float, coef0: float) -> float:
    m = len(x)
    kxx = (x @ x.T * gamma + coef0) ** degree
    kyy = (y @ y.T * gamma + coef0) ** degree
    kxy = (x @ y.T * gamma + coef0) ** degree
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(fake: np.ndarray, real: np.ndarray, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0, degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
        device: str | None = None) -> tuple[float, float]:
    """KID mean and std over `subsets` random subsets of min(subset_size, len(fake), len(real)) rows each.

    With `device` the kernel sums run in float64 torch on that device (same subsets, same values).
    """
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    m = min(subset_size, len(fake), len(real))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per side, got {len(fake)} and {len(real)}")
    if m < subset_size:
        log.info("KID subset size %d (fewer samples than %d)", m, subset_size)
    gamma = 1.0 / fake.shape[1] if gamma is None else gamma
    rng = np.random.default_rng(seed)
    draws = [(rng.choice(len(fake), m, replace=False), rng.choice(len(real), m, replace=False))
             for _ in range(subsets)]
    if device is None:
        vals = [mmd2_unbiased(fake[i], real[j], degree=degree, gamma=gamma, coef0=coef0) for i, j in draws]
    else:
        import torch

        tf = torch.as_tensor(fake, dtype=torch.float64, device=device)
        tr = torch.as_tensor(real, dtype=torch.float64, device=device)
        vals = [_mmd2_torch(tf[torch.as_tensor(i, device=device)], tr[torch.as_tensor(j, device=device)],
                            degree, gamma, coef0) for i, j in draws]
    vals = np.array(vals)
    return float(vals.mean()), float(vals.std())


def memorisation_distance(fake: np.ndarray, real: np.ndarray, *, chunk: int = 1024, device: str | None = None) -> float:
    """Mean over generated rows of the minimum cosine distance 1 - |cos| to any real row (zero rows dropped).

    With `device` the products run in float64 torch on that device.
    """
    def unit(f):
        f = np.asarray(f, np.float64)
        f = f[f.sum(axis=1) != 0]
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    g, t = unit(fake), unit(real)
    if not len(g) or not len(t):
        raise ValueError("memorisation distance needs non-zero feature rows on both sides")
    if device is None:
        mins = np.concatenate([(1.0 - np.abs(g[i:i + chunk] @ t.T)).min(axis=1) for i in range(0, len(g), chunk)])
        return float(mins.mean())
    import torch

    tg = torch.as_tensor(g, device=device)
    tt = torch.as_tensor(t, device=device)
    mins = torch.cat([(1.0 - (tg[i:i + chunk] @ tt.T).abs()).amin(dim=1) for i in range(0, len(tg), chunk)])
    return float(mins.mean())


def mifid(fid_value: float, distance: float, *, eps: float = MIFID_EPS) -> float:
    """FID / (d_thr + 1e-14) with d_thr = distance if distance < eps else 1 (Kaggle's MiFID)."""
    d_thr = distance if distance < eps else 1.0
    return float(fid_value / (d_thr + MIFID_FID_EPS))


def content_key(*parts: str | bytes) -> str:
    """sha256 over the given parts (e.g. manifest hash, pack ids, weights identity)."""
    h = hashlib.sha256()
    for p in (str(CACHE_VERSION), *parts):
        b = p if isinstance(p, bytes) else str(p).encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def array_key(arr: np.ndarray, *, block: int = 256) -> str:
    """sha256 of an image array's shape, dtype and bytes (streams memory-mapped arrays in blocks)."""
    h = hashlib.sha256(f"{arr.shape}{arr.dtype}".encode())
    for i in range(0, len(arr), block):
        h.update(np.ascontiguousarray(arr[i:i + block]).tobytes())
    return h.hexdigest()


class FeatureCache:
    """Reference features + statistics on disk: `<dir>/<aa>/<key>.npz`, written atomically."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def load(self, key: str) -> tuple[np.ndarray, Stats] | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                f, mu, sigma = z["features"], z["mu"], z["sigma"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable feature cache %s: %s", p, exc)
            return None
        log.info("reference features from cache %s", p)
        return f, Stats(mu, sigma, len(f))

    def save(self, key: str, features: np.ndarray, stats: Stats) -> Path:
        p = self.path(key)
        with atomic_path(p, suffix=".npz", prefix=".tmp-") as tmp, open(tmp, "wb") as f:
            np.savez(f, features=features.astype(np.float32), mu=stats.mu, sigma=stats.sigma)
        return p
