"""Detect on Ray: a chunk of photos detected where the model lives (a Ray Data actor, on a GPU when
the cluster has one), returning the same records the driver journals (see `curate.detect`).

The worker decodes, detects (batched, with the second look), chooses the primary motorbike and
writes its crop into the work folder's cache (a folder every node sees, as for `curate repair`'s
copies), exactly as the local engine does; the driver only takes the records in. The model is
loaded once per worker process and kept there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .detect_stream import Job, stream_detections

_detectors: dict[tuple, list] = {}     # (weights, device, imgsz, copies) -> loaded detector copies, per process


@dataclass(frozen=True)
class DetectSpec:
    """What a worker needs to detect like the driver would: the model, the options, the run's key and
    the manifest whose cache the crops go to."""
    weights: str
    device: str
    opts: object              # curate.detect.DetectOptions
    key: str
    manifest_path: str


def _detectors_for(spec: DetectSpec) -> list:
    """The detector and its copies side by side (`curate.detector_copies`), as many as the actor's
    CPUs take."""
    from .detector import load_detector
    from .detector_copies import detector_copies

    k = (spec.weights, spec.device, spec.opts.imgsz, spec.opts.copies)
    if k not in _detectors:
        det = load_detector(spec.weights, spec.device, imgsz=spec.opts.imgsz)
        _detectors[k] = detector_copies(det, spec.opts.copies)     # the actor's CPUs (cpus_here)
    return _detectors[k]


def detect_chunk(items: list[tuple[Job, str]], spec: DetectSpec) -> list[dict]:
    """Journal records (`DetectResults.journal_record`) of `(job, the row's path)` items."""
    from .detect_results import DetectResults

    copies = _detectors_for(spec)
    det = copies[0]
    run = DetectResults(None, Path(spec.manifest_path), det, spec.opts, spec.key)
    paths = {job.sample_id: path for job, path in items}
    for d in stream_detections(det, [job for job, _ in items], copies=copies, **spec.opts.stream_kwargs()):
        if d.status is None:
            run.record(d.job, d.bgr, d.dets, {"path": paths[d.job.sample_id]}, d.look)
        else:
            run.record_failure(d.job, d.status, d.error)
    return [run.journal_record(job.sample_id) for job, _ in items]
