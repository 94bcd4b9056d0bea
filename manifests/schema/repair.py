"""Columns written by `curate repair`."""
import pyarrow as pa

FIELDS = [
    pa.field("repair_action", pa.string()),       # none | converted | best_frame | recovered | unrecoverable | skipped
    pa.field("repair_reason", pa.string()),       # what was wrong, e.g. "animated GIF, 12 frames", "CMYK"
    pa.field("repaired_path", pa.string()),       # cache file relative to the manifest folder, null when not copied
    pa.field("frame_index", pa.int32()),          # chosen frame of an animation
    pa.field("recovered_fraction", pa.float32()), # share of rows decoded in a truncated file
    pa.field("background", pa.string()),          # composite colour used for transparency, e.g. "#ffffff"
    pa.field("repair_key", pa.string()),          # hash of the repair parameters this row was repaired with
]
