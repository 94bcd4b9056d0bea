"""Hamming search (multi-index hashing) against the all-pairs reference; union-find groups."""
import numpy as np
import pytest

from curate.grouping import connected_groups, hamming_pairs, hamming_pairs_naive, plan


def _hashes(n, seed, planted=0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
    # planted near duplicates at every distance 0..12 (a few share a chunk boundary)
    for k in range(planted):
        i, j = rng.choice(n, 2, replace=False)
        bits = rng.choice(64, k % 13, replace=False)
        flip = np.uint64(0)
        for b in bits:
            flip |= np.uint64(1) << np.uint64(b)
        h[j] = h[i] ^ flip
    return h


@pytest.mark.parametrize("threshold", [0, 1, 2, 3, 5, 8, 11, 16])
def test_matches_naive(threshold):
    h = _hashes(1500, threshold, planted=120)
    got = hamming_pairs(h, threshold)
    want = hamming_pairs_naive(h, threshold)
    assert np.array_equal(got, want)
    assert len(want) >= 120 // 13 * min(threshold + 1, 13) // 2   # the planted pairs are there


def test_clustered_hashes_and_duplicates():
    """Many equal and nearly equal hashes (one huge bucket) still give exactly the naive pairs."""
    rng = np.random.default_rng(5)
    base = np.uint64(0x0123456789ABCDEF)
    h = np.array([base ^ (np.uint64(1) << np.uint64(rng.integers(0, 64))) if k % 3 else base
                  for k in range(300)], dtype=np.uint64)
    h = np.concatenate([h, _hashes(300, 6)])
    assert np.array_equal(hamming_pairs(h, 2), hamming_pairs_naive(h, 2))


def test_plan_is_exact_by_pigeonhole():
    for n in (10, 10_000, 1_000_000):
        for t in range(0, 20):
            chunks = plan(n, t)
            assert sum(c.bits for c in chunks) == 64
            # generalised pigeonhole: sum of radii >= T - m + 1 guarantees no pair is missed
            assert sum(c.radius for c in chunks) >= t - len(chunks) + 1


def test_small_inputs_and_bad_threshold():
    assert hamming_pairs(np.array([], dtype=np.uint64), 3).shape == (0, 2)
    assert hamming_pairs(np.array([7], dtype=np.uint64), 3).shape == (0, 2)
    assert hamming_pairs(np.array([7, 7], dtype=np.uint64), 0).tolist() == [[0, 1]]
    with pytest.raises(ValueError):
        plan(10, 64)


def test_connected_groups():
    pairs = np.array([[3, 4], [0, 3], [1, 2], [6, 5], [8, 7], [7, 6]])
    labels = connected_groups(10, pairs)
    assert labels.tolist() == [0, 1, 1, 0, 0, 5, 5, 5, 5, 9]
    assert connected_groups(3, np.empty((0, 2))).tolist() == [0, 1, 2]


def test_connected_groups_long_chain_random_order():
    rng = np.random.default_rng(0)
    n = 5000
    perm = rng.permutation(n)
    pairs = np.stack([perm[:-1], perm[1:]], axis=1)[rng.permutation(n - 1)]
    assert set(connected_groups(n, pairs).tolist()) == {0}
