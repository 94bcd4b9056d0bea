"""Which photos get the later looks, and when a later look's detections replace the first's.

A stand-in detector that answers the padded image with a chosen box (the real TFLite model's
behaviour on real photos is in tests/test_detect_real.py)."""
from __future__ import annotations

import numpy as np

from curate.detect_stream import SMALL_BOX_GROWTH, _look_again


class PaddedAnswers:
    """Answers every padded image with one motorbike box of `side` px, centred in the padded image."""

    motorbike_labels = {"motorcycle"}

    def __init__(self, side: float):
        self.side = side
        self.calls = 0

    def prepare(self, bgr, imgsz):
        return bgr, bgr.shape

    def predict(self, images, *, imgsz, conf, orig_shapes):
        self.calls += len(images)
        out = []
        for h, w in orig_shapes:
            x0, y0 = (w - self.side) / 2, (h - self.side) / 2
            out.append([{"label": "motorcycle", "conf": 0.5, "x0": x0, "y0": y0,
                         "x1": x0 + self.side, "y1": y0 + self.side}])
        return out


def _bike(side: float) -> dict:
    return {"label": "motorcycle", "conf": 0.6, "x0": 0.0, "y0": 0.0, "x1": side, "y1": side}


def _run(det, first: list, size: int = 100, **kw):
    group = [(None, np.zeros((size, size, 3), np.uint8), None, None) for _ in first]
    all_dets, looks = [list(d) for d in first], ["first"] * len(first)
    _look_again(det, group, all_dets, looks, 640, 0.25, 0.25, **kw)
    return all_dets, looks


def test_only_photos_without_a_motorbike_look_again_by_default():
    det = PaddedAnswers(side=80)
    dets, looks = _run(det, [[], [_bike(20)]])
    assert looks == ["padded", "first"] and det.calls == 1
    assert dets[1] == [_bike(20)]


def test_a_small_box_is_replaced_only_by_a_box_growth_times_as_large():
    # 20 px box = 4% of a 100 px photo, under `small`: looked at again
    grown = PaddedAnswers(side=20 * np.sqrt(SMALL_BOX_GROWTH) + 1)
    dets, looks = _run(grown, [[_bike(20)]], small=0.12)
    assert looks == ["padded"] and dets[0][0]["x1"] - dets[0][0]["x0"] > 40
    barely = PaddedAnswers(side=20 * np.sqrt(SMALL_BOX_GROWTH) - 1)
    dets, looks = _run(barely, [[_bike(20)]], small=0.12)
    assert looks == ["first"] and dets[0] == [_bike(20)]


def test_a_box_over_the_small_share_is_not_looked_at_again():
    det = PaddedAnswers(side=90)
    _, looks = _run(det, [[_bike(40)]], small=0.12)     # 16% of the photo
    assert looks == ["first"] and det.calls == 0


def test_the_far_look_keeps_to_thumbnails():
    det = PaddedAnswers(side=80)
    _, looks = _run(det, [[]], size=300, max_side=200, name="far")
    assert looks == ["first"] and det.calls == 0
    _, looks = _run(det, [[]], size=150, max_side=200, name="far")
    assert looks == ["far"]
