"""What detect makes of one photo's detections (the primary motorbike, its crop's columns) and the
run's results: kept in its journal as they come, written into the manifest (see `curate.detect`)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from manifests.paths import present

from .detect_stream import Job

STAGE = "detect"
DONE_STATUSES = ("ok", "no_motorbike")   # resumed (skipped) when the key matches
PERSON_LABELS = frozenset({"person"})


def row_key(key: str, decoded_from: str) -> str:
    """A row's `detect_key`: the run's key, bound to the repaired copy it was decoded from (if any)."""
    if not decoded_from:
        return key
    return hashlib.sha256(f"{key}|{decoded_from}".encode()).hexdigest()[:16]

def _box(d: dict) -> tuple[float, float, float, float]:
    return d["x0"], d["y0"], d["x1"], d["y1"]


def rank_motorbikes(dets: list[dict], motorbike_labels) -> list[dict]:
    """Motorbike detections, best first: largest area x confidence (the first is the primary)."""
    from .crop import box_area

    bikes = [d for d in dets if d["label"] in motorbike_labels]
    return sorted(bikes, key=lambda d: -box_area(_box(d)) * d["conf"])


def describe_bike(bike: dict, dets: list[dict], width: int, height: int, margin: float) -> dict:
    """The per-crop columns for one motorbike detection among all `dets` of its image."""
    from .crop import box_area, covered_fraction, is_cut_off, margin_box

    box = _box(bike)
    persons = [_box(d) for d in dets if d is not bike and d["label"] in PERSON_LABELS]
    others = [_box(d) for d in dets if d is not bike and d["label"] not in PERSON_LABELS]
    return {
        "primary_box": [float(v) for v in box],
        "box_area_frac": box_area(box) / float(width * height),
        "person_overlap": covered_fraction(box, persons),
        "other_overlap": covered_fraction(box, others),
        "cut_off": is_cut_off(box, width, height),
        "crop_box": list(margin_box(box, margin, width, height)),
    }


EMPTY_CROP = {"primary_box": None, "box_area_frac": None, "person_overlap": None,
              "other_overlap": None, "cut_off": None, "crop_box": None, "crop_path": None,
              "crop_sha256": None}


class DetectResults:
    """Accumulates a detect run's results, keeps them in its journal, writes the manifest.

    Per base row: `results[sid]` (its detect columns) and `extras[sid]` (the rows of its further
    motorbikes: their detect columns, `crop_index` and `sample_id`; the file columns are copied from
    the base row when the frame is made)."""

    def __init__(self, m, manifest_path: Path, det, opts, key: str):
        self.m, self.manifest_path, self.det, self.opts, self.key = m, manifest_path, det, opts, key
        self.results: dict[str, dict] = {}     # base sample_id -> detect columns
        self.extras: dict[str, list[dict]] = {}  # base sample_id -> extra crop rows
        self.common = {"detector": det.name, "weights_sha256": det.weights_sha256,
                       "ultralytics_version": det.ultralytics_version, "detect_key": key,
                       "crop_margin": float(opts.margin)}

    # ---- recording
    def record_failure(self, job: Job, status: str, error: str) -> None:
        self.results[job.sample_id] = {**self.common, **EMPTY_CROP, "detect_status": status,
                                       "detect_look": None,
                                       "detect_key": row_key(self.key, job.decoded_from),
                                       "detect_error": error, "detections": None, "n_motorbikes": None}
        self.extras[job.sample_id] = []

    def record(self, job: Job, bgr, dets: list[dict], base_row, look: str | None = "first") -> None:
        from manifests.ids import sample_id

        height, width = bgr.shape[:2]
        bikes = rank_motorbikes(dets, self.det.motorbike_labels)
        image_cols = {**self.common, "detections": dets, "n_motorbikes": len(bikes),
                      "detect_look": look,
                      "detect_error": None, "detect_key": row_key(self.key, job.decoded_from)}
        if not bikes:
            self.results[job.sample_id] = {**image_cols, **EMPTY_CROP, "detect_status": "no_motorbike"}
            self.extras[job.sample_id] = []
            return
        chosen = [bikes[0]]
        if self.opts.per_image == "all":
            chosen += [b for b in bikes[1:]
                       if min(b["x1"] - b["x0"], b["y1"] - b["y0"]) >= self.opts.min_size]
        rows = []
        for bike in chosen:
            cols = describe_bike(bike, dets, width, height, self.opts.margin)
            cols.update(self._write_crop(job, bgr, cols["crop_box"]))
            rows.append({**image_cols, **cols, "detect_status": "ok"})
        self.results[job.sample_id] = rows[0]
        extras = []
        for k, cols in enumerate(rows[1:], start=1):
            extra = dict(cols)
            extra["crop_index"] = k
            extra["sample_id"] = sample_id(job.sha256, str(base_row["path"]), k)
            extras.append(extra)
        self.extras[job.sample_id] = extras

    def _write_crop(self, job: Job, bgr, crop_box) -> dict:
        from common.atomic import write_bytes_atomic
        from manifests.paths import cache_file, relative_to_manifest

        from .crop import crop_digest, crop_png

        data = crop_png(bgr[:, :, ::-1], crop_box)
        target = cache_file(self.manifest_path, "crops", crop_digest(job.sha256, crop_box, job.decoded_from))
        sha = hashlib.sha256(data).hexdigest()
        if not (target.is_file() and target.stat().st_size == len(data)):
            write_bytes_atomic(target, data)
        return {"crop_path": relative_to_manifest(self.manifest_path, target), "crop_sha256": sha}

    @property
    def file_columns(self) -> list[str]:
        """Scan and repair columns, copied onto extra crop rows."""
        from manifests.schema import STAGE_COLUMNS

        names = {f.name for st in ("scan", "repair") for f in STAGE_COLUMNS[st]}
        return [c for c in self.m.df.columns if c in names]

    # ---- writing
    def frame(self):
        import numpy as np
        import pandas as pd

        from manifests.schema import STAGE_COLUMNS

        df = self.m.df
        detect_cols = [f.name for f in STAGE_COLUMNS["detect"]]
        done = set(self.results)
        # Extra crop rows of re-detected files are replaced by the new ones.
        if len(df) and done:
            base_ids = df.loc[df["crop_index"] == 0].set_index("path")["sample_id"]
            redone_paths = set(base_ids[base_ids.isin(done)].index)
            df = df[~((df["crop_index"] > 0) & df["path"].isin(redone_paths))]
        df = df.reset_index(drop=True)
        arrays = {}
        for c in detect_cols:
            arrays[c] = (np.array(df[c].to_numpy(dtype=object), dtype=object) if c in df.columns
                         else np.full(len(df), None, dtype=object))
        idx = pd.Index(df["sample_id"]).get_indexer(list(self.results))
        for i, res in zip(idx, self.results.values()):
            for c in detect_cols:
                arrays[c][i] = res.get(c)
        out = df.copy()
        for c in detect_cols:
            out[c] = pd.Series(arrays[c], index=out.index, dtype=object)
        base = df.loc[df["crop_index"] == 0].set_index("sample_id", drop=False)[self.file_columns]
        extra_rows = [{**base.loc[sid].to_dict(), **r} for sid, rows in self.extras.items() for r in rows]
        if extra_rows:
            out = pd.concat([out, pd.DataFrame(extra_rows)], ignore_index=True)
            # Extra rows follow their file's row.
            order = {p: i for i, p in enumerate(out.loc[out["crop_index"] == 0, "path"])}
            out["_o"] = out["path"].map(order)
            out = out.sort_values(["_o", "crop_index"], kind="stable").drop(columns="_o")
        return out.reset_index(drop=True)

    def write(self, params: dict):
        from manifests.io import Manifest, write_manifest

        m = Manifest(df=self.frame(), root=self.m.root, history=self.m.history, path=self.manifest_path)
        write_manifest(m, self.manifest_path, stage=STAGE, params=params, input_path=self.manifest_path)
        self.m.history = m.history

    # ---- the journal (see `curate.row_stage`)
    def journal_record(self, sid: str) -> dict:
        return {"sample_id": sid, "result": self.results[sid], "extras": self.extras.get(sid, [])}

    def take(self, rec: dict) -> None:
        """A record made elsewhere (a Ray worker's `journal_record`)."""
        self.results[rec["sample_id"]], self.extras[rec["sample_id"]] = rec["result"], rec["extras"]

    def restore(self, journaled: dict[str, dict], jobs: list, folder: Path) -> list:
        """Take back the results an interrupted run journaled (same key, same decoded source, crops
        still there); returns the jobs still to do."""
        todo = []
        for job in jobs:
            rec = journaled.get(job.sample_id)
            rows = [rec["result"], *rec["extras"]] if rec else []
            if rec and rec["result"].get("detect_key") == row_key(self.key, job.decoded_from) \
                    and rec["result"].get("detect_status") in DONE_STATUSES and all(
                    not present(r.get("crop_path")) or (folder / str(r["crop_path"])).is_file() for r in rows):
                self.results[job.sample_id], self.extras[job.sample_id] = rec["result"], rec["extras"]
            else:
                todo.append(job)
        return todo
