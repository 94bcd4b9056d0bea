"""The acceptance figures of the dedupe and busyness defaults, on a modest sample of the real photos.

The full figures come from `benchmarks/calibrate.py` (docs/calibration.md).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _calibrate():
    spec = importlib.util.spec_from_file_location("moto_calibrate", REPO / "benchmarks" / "calibrate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # dataclasses look their module up while being built
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_near_duplicate_acceptance(caltech):
    from curate.dedupe import DedupeOptions

    cal = _calibrate()
    photos = cal.sample_photos(caltech, 80, seed=1)
    hs = cal.hash_transformed(photos, "phash", seed=1)
    d = DedupeOptions()
    pr = cal.precision_recall(hs, d.threshold, d.fine_threshold)
    for name in cal.ACCEPTANCE:
        assert pr[name]["recall"] >= 0.95, (name, pr[name])
        assert pr[name]["precision"] >= 0.99, (name, pr[name])
    # the harness can fail: without the 256-bit check precision collapses on these look-alike photos
    loose = cal.precision_recall(hs, 12, -1)
    assert min(loose[n]["precision"] for n in cal.ACCEPTANCE) < 0.99


@pytest.mark.slow
def test_busyness_separates_cctv_from_caltech(caltech, cctv, tflite_weights):
    from curate.checks import CHECKS

    cal = _calibrate()
    cal_photos = cal.sample_photos(caltech, 30, seed=2)
    cctv_photos = cal.sample_photos(cctv, 1000)
    boxes = cal.detect_boxes(cal_photos + cctv_photos, tflite_weights)
    cal_v = cal.busy_values(cal_photos, boxes, all_bikes=False)
    cc_v = cal.busy_values(cctv_photos, boxes, all_bikes=True)
    assert len(cc_v) >= 20            # the detector finds the scooters
    sep = cal.busy_separation(cal_v, cc_v)
    assert sep["share_cctv_busier"] >= 0.90, sep
    # the measure's best cut between the two sets flags nearly all CCTV crops, a minority of Caltech
    cut = sep["balanced_cut_raw"]
    assert np.mean([v >= cut for v in cc_v]) >= 0.85 and np.mean([v >= cut for v in cal_v]) <= 0.5
    # the default flags only the extreme (it does not tell a person's busy backgrounds from ordinary
    # ones on scraped photos, docs/agreement.md): no Caltech photo
    thr = CHECKS["busy"].threshold
    assert not any(CHECKS["busy"].score(v) >= thr for v in cal_v)
