"""Columns written by `curate text`: how much of the photo is text, and what was measured.

The detector (RapidOCR's version), its input size and the line rule are in the write's params
(`Manifest.stage_params("text")`).
"""
import pyarrow as pa

FIELDS = [
    pa.field("text_share", pa.float32()),    # share of the photo's pixels under text lines, 0..1 (null: not measured)
    pa.field("text_source", pa.string()),    # image measured (relative to the manifest folder)
    pa.field("text_error", pa.string()),     # why a row was not measured, else null
]
