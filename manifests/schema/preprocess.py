"""Columns written by the `preprocess` stage (they describe the pack named in its params' `pack`)."""
import pyarrow as pa

# Why a row is or is not in the pack (fixed set).
PREP_STATUSES = (
    "packed",     # in the pack at row pack_index
    "too_small",  # would need more enlargement than max_upscale allows
    "error",      # its image could not be read (prep_reason has the error)
    "skipped",    # not selected: keep is not true, or status/detect_status not ok
)

FIELDS = [
    pa.field("pack_index", pa.int32()),   # row in the packed array, null when not packed
    pa.field("prep_status", pa.string()), # one of PREP_STATUSES
    pa.field("prep_reason", pa.string()), # why not packed (null when packed)
    pa.field("prep_scale", pa.float32()), # largest enlargement of a side (<1: shrunk), null when unread
]
