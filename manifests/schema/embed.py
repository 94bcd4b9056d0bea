"""Columns written by `curate embed`: one vector per sample, and what made it.

The backend, its weights' sha256 and the measuring size are in the write's params
(`Manifest.stage_params("embed")`); the vectors are L2-normalised float32.
"""
import pyarrow as pa

FIELDS = [
    pa.field("embedding", pa.list_(pa.float32())),   # null when the sample has no pixels
    pa.field("embed_backend", pa.string()),           # e.g. "stats", "ultralytics:yolo11n.pt"
    pa.field("embed_source", pa.string()),            # image embedded (relative to the manifest folder)
    pa.field("embed_error", pa.string()),             # why a row has no embedding, else null
    pa.field("outlier_knn", pa.float32()),            # cosine distance to the k-th nearest primary sample
    pa.field("outlier_rank", pa.float32()),           # its rank among the primary samples, 0..1 (1: most unusual)
]
