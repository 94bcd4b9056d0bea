"""The `tflite` embedding backend: the SPPF features of a YOLO TFLite export, max-pooled.

The model's flatbuffer is read and rewritten with LiteRT's own schema
(`ai_edge_litert.schema_py_generated`, the object API) into the backbone alone: the operators the
tensor the SPPF block ends with depends on (108 of the shared YOLOv8n's 253), that tensor its only
output. The interpreter runs it as it runs detection (XNNPACK, fused) and the features are read
like any output, bit for bit what an interpreter keeping every intermediate tensor of the whole
model reads there (reading them from an interpreter that keeps every tensor runs at half speed).
Per crop on one thread (shared YOLOv8n, web photos): the whole model with the features as an extra
output 38 ms, the backbone alone 21 ms. One copy of the interpreter
per core (one thread each, at most 8) embeds the crops of a chunk side by side, as
`curate.detector_copies` does for detection.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common.errors import UserError

from .detector_copies import Lender, cpus_here, share_cpus
from .embeddings import _unit, letterbox


def sppf_output(details: list[dict]) -> int:
    """Index of the tensor the backbone's SPPF block ends with: the first activation (a 4-D `Mul`, the
    SiLU) after the concat of its max pools."""
    pools = [d["index"] for d in details if "max_pool" in d["name"].lower()]
    if pools:
        after = sorted((d for d in details if d["index"] > max(pools) and len(d["shape"]) == 4),
                       key=lambda d: d["index"])
        concat = next((d["index"] for d in after if "concat" in d["name"].lower()), None)
        act = next((d for d in after if concat is not None and d["index"] > concat
                    and d["name"].split(";")[0].lower().endswith("mul")), None)
        if act is not None:
            return int(act["index"])
    raise UserError("this TFLite model has no SPPF block to read features from (is it a YOLOv8/11 export?)")


def backbone_only(model: bytes, index: int) -> bytes:
    """The TFLite flatbuffer `model` cut down to what tensor `index` depends on: the operators of its
    (first) subgraph that lead to it, in their order, and the tensor as the only output (the
    detection head and neck no longer run)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    sg = m.subgraphs[0]
    needed, kept = {index}, []
    for op in reversed(sg.operators):
        if needed.intersection(int(i) for i in op.outputs):
            kept.append(op)
            needed.update(int(i) for i in op.inputs if int(i) >= 0)
    sg.operators = kept[::-1]
    sg.outputs = [index]
    b = flatbuffers.Builder(len(model) + 4096)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


class TFLiteFeatures:
    """One interpreter of the rewritten model; call it with a PIL image for its unit vector. `side`: the
    square it runs on (a multiple of 32), else the file's own input size."""

    def __init__(self, model: bytes, index: int, threads: int = 1, side: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_content=model, num_threads=threads)
        if side is not None:    # the backbone is all convolutions and pools: any multiple of 32 runs
            self.it.resize_tensor_input(self.it.get_input_details()[0]["index"], [1, side, side, 3])
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.out = index

    def __call__(self, img) -> np.ndarray:
        _, h, w, _ = (int(x) for x in self.inp["shape"])
        x = letterbox(img, w, h)[None]
        scale, zero = self.inp["quantization"]
        if self.inp["dtype"] != np.float32 and scale:
            x = np.clip(np.round(x / scale + zero), np.iinfo(self.inp["dtype"]).min,
                        np.iinfo(self.inp["dtype"]).max).astype(self.inp["dtype"])
        self.it.set_tensor(self.inp["index"], x)
        self.it.invoke()
        return _unit(self.it.get_tensor(self.out)[0].astype(np.float32).max(axis=(0, 1)))


class TFLiteCopies:
    """Copies of the features side by side, one per core, each in its own thread."""

    def __init__(self, path: str, cpus: int | None = None, side: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        raw = Path(path).read_bytes()
        index = sppf_output(Interpreter(model_content=raw).get_tensor_details())
        model = backbone_only(raw, index)
        n, threads = share_cpus(max(1, cpus or cpus_here()))
        self.lender = Lender(TFLiteFeatures(model, index, threads=threads, side=side)
                             for _ in range(n))
        self.pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="embed")

    def _one(self, img) -> np.ndarray:
        with self.lender.lend() as features:
            return features(img)

    def __call__(self, images: list) -> list[np.ndarray]:
        return list(self.pool.map(self._one, images))
