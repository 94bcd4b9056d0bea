"""A fixed-size LiteRT (TFLite) detector run on its own interpreter, without ultralytics' predictor.

ultralytics' `predict` around a LiteRT export costs about 15% on top of the interpreter's `invoke`
on this machine (its stream and Results bookkeeping, torch tensors for a uint8 -> float conversion,
a batch split). `DirectLiteRT` keeps the steps that make the boxes, and takes them from ultralytics
itself: its `LetterBox`, the same float32 [0, 1] RGB input, the box denormalisation of its LiteRT
backend, its `non_max_suppression` with the predictor's own settings and its `scale_boxes`. The boxes
are the predictor's, bit for bit (tests/test_detector_litert.py). Models it does not fit (NCHW or
integer-input exports, end-to-end NMS graphs, other tasks, a batch other than 1) keep ultralytics'
path.
"""
from __future__ import annotations

import numpy as np

DIRECT_FORMATS = frozenset({"litert", "tflite"})


class DirectLiteRT:
    """Detect in BGR uint8 images with one LiteRT interpreter (not thread-safe: one per thread)."""

    def __init__(self, interpreter, args):
        self.interpreter = interpreter
        inp = interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        self.size = (int(inp["shape"][1]), int(inp["shape"][2]))    # (h, w) of the NHWC input
        self.output_index = interpreter.get_output_details()[0]["index"]
        self.iou, self.max_det = args.iou, args.max_det
        self.classes, self.agnostic = args.classes, args.agnostic_nms

    def __call__(self, images: list, conf: float) -> list:
        """Per image, a float tensor (n, 6): x0, y0, x1, y1 in the image's pixels, confidence, class."""
        import torch
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import scale_boxes

        letterbox = LetterBox(self.size, auto=False)
        h, w = self.size
        out = []
        for bgr in images:
            x = np.divide(letterbox(image=bgr)[None, ..., ::-1], 255, dtype=np.float32)   # RGB in [0, 1]
            self.interpreter.set_tensor(self.input_index, x)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output_index)
            y[:, [0, 2]] *= w
            y[:, [1, 3]] *= h
            pred = non_max_suppression(torch.as_tensor(y), conf, self.iou, self.classes, self.agnostic,
                                       max_det=self.max_det, nc=0)[0]
            pred[:, :4] = scale_boxes((h, w), pred[:, :4], bgr.shape)
            out.append(pred)
        return out


def direct_litert(model) -> DirectLiteRT | None:
    """A `DirectLiteRT` for a loaded (and warmed-up) ultralytics YOLO, or None where it does not fit."""
    predictor = getattr(model, "predictor", None)
    backend = getattr(predictor, "model", None)
    inner = getattr(backend, "backend", None)
    interpreter = getattr(inner, "interpreter", None)
    if interpreter is None or str(getattr(backend, "format", "")) not in DIRECT_FORMATS:
        return None
    if getattr(inner, "intel", False) or not getattr(inner, "nhwc", False) or getattr(backend, "end2end", False):
        return None
    if getattr(predictor.args, "task", "detect") != "detect" or getattr(backend, "fp16", False):
        return None
    inp, outs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inp) != 1 or len(outs) != 1 or inp[0]["dtype"] != np.float32 or outs[0]["dtype"] != np.float32:
        return None
    if int(inp[0]["shape"][0]) != 1 or len(outs[0]["shape"]) != 3:
        return None
    return DirectLiteRT(interpreter, predictor.args)
