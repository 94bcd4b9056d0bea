"""Columns written by `curate score`: raw -> score in [0, 1] -> flag per check.

The checks are registered in `curate.checks.CHECKS`; their names are listed
here too so the columns are declared without importing the curate package
(tests keep the two lists equal). Thresholds, score mappings and the measuring
size are in the write's params (`Manifest.stage_params("score")`).
"""
import pyarrow as pa

CHECK_NAMES = ("busy", "blur", "dark", "bright", "small", "aspect", "grey", "crowded", "cut_off", "closeup",
               "odd_closeup", "several", "text", "outlier")

FIELDS = [
    f
    for name in CHECK_NAMES
    for f in (
        pa.field(f"{name}_raw", pa.float32()),     # measured value (meaning in the params)
        pa.field(f"{name}_score", pa.float32()),   # 0..1, higher = more of the problem
        pa.field(f"{name}_flag", pa.bool_()),      # score >= threshold; null when not measurable
    )
] + [
    pa.field("subject_frac", pa.float32()),        # bike box area / crop area (null without a box)
    pa.field("score_source", pa.string()),         # image measured (relative to the manifest folder)
    pa.field("score_error", pa.string()),          # why a row has no scores, else null
]
