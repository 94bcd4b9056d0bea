"""The direct LiteRT path (`curate.detector_litert`) gives ultralytics' own boxes, bit for bit."""
import numpy as np
import pytest

from curate.crop import decode_rgb
from curate.detect_stream import pad_for_second_look


@pytest.fixture(scope="module")
def detector(tflite_weights):
    from curate.detector import load_detector

    det = load_detector(tflite_weights, "cpu")
    assert det.direct is not None, "the shared YOLOv8n int8 export is one the direct path runs"
    return det


def _through_ultralytics(det, images, conf):
    direct, det.direct = det.direct, None
    try:
        return det.predict(images, imgsz=640, conf=conf)
    finally:
        det.direct = direct


@pytest.mark.slow
def test_direct_boxes_equal_ultralytics_on_real_photos(detector, shared_data):
    """Scraped photos of every shape, their padded second look, a thumbnail, a grey frame, in batches
    of one and of several, at the first look's and the second look's confidence."""
    files = sorted((shared_data / "web").rglob("*.jpg"))[::25][:40]
    images = [np.ascontiguousarray(decode_rgb(f)[:, :, ::-1]) for f in files]
    images += [pad_for_second_look(images[0], 0.25)[0], np.ascontiguousarray(images[1][::8, ::8]),
               np.full((300, 500, 3), 114, np.uint8)]
    found = 0
    for conf in (0.25, 0.15):
        for batch in ([images[0]], images[:7], images[7:]):
            direct = detector.predict(batch, imgsz=640, conf=conf)
            assert direct == _through_ultralytics(detector, batch, conf)
            found += sum(len(d) for d in direct)
    assert found > 15    # the comparison is of boxes, not of empty lists


def test_direct_path_only_for_models_it_fits():
    from types import SimpleNamespace

    from curate.detector_litert import direct_litert

    assert direct_litert(SimpleNamespace(predictor=None)) is None          # a .pt model: no interpreter
    interp = SimpleNamespace(get_input_details=lambda: [{"dtype": np.int8, "shape": [1, 640, 640, 3], "index": 0}],
                             get_output_details=lambda: [{"dtype": np.int8, "shape": [1, 84, 8400], "index": 1}])
    backend = SimpleNamespace(format="tflite", end2end=False, fp16=False,
                              backend=SimpleNamespace(interpreter=interp, nhwc=True, intel=False))
    model = SimpleNamespace(predictor=SimpleNamespace(model=backend, args=SimpleNamespace(task="detect")))
    assert direct_litert(model) is None                                    # integer input: ultralytics quantizes
    backend.backend.nhwc = False
    assert direct_litert(model) is None
