"""Columns written by `curate dedupe` (exact and near duplicates, keeper per group)."""
import pyarrow as pa

FIELDS = [
    pa.field("pixel_hash", pa.string()),         # "<w>x<h>-<hex 16x16 luma thumbnail>" of the decoded file
    pa.field("phash", pa.string()),              # 64-bit perceptual hash of the sample's crop (hex; method in params)
    pa.field("phash_mirror", pa.string()),       # the same of the left-right mirrored crop
    pa.field("phash_fine", pa.string()),         # 256-bit version (hex), verifies candidate pairs
    pa.field("phash_fine_mirror", pa.string()),
    pa.field("phash_full", pa.string()),         # the same four hashes of the whole decoded photo
    pa.field("phash_full_mirror", pa.string()),
    pa.field("phash_full_fine", pa.string()),
    pa.field("phash_full_fine_mirror", pa.string()),
    pa.field("hash_source", pa.string()),        # image hashed (relative to the manifest folder where inside it)
    pa.field("hash_error", pa.string()),         # why a row has no hashes (undecodable), else null
    pa.field("q_area", pa.int64()),              # crop pixels (keeper choice)
    pa.field("q_size", pa.string()),             # crop "<w>x<h>"
    pa.field("q_sharp", pa.float32()),           # Laplacian variance at 256 px (keeper choice)
    pa.field("q_busy", pa.float32()),            # background edge density (keeper choice)
    pa.field("dup_group", pa.int64()),           # group id, null when the row has no duplicate
    pa.field("is_duplicate", pa.bool_()),        # True: another row of the group was kept; null when unhashed
    pa.field("dup_keeper", pa.bool_()),          # True: kept copy of its group; null when not in a group
    pa.field("dup_rank", pa.int32()),            # 0 = best copy of its group, 1 = next best, ...; null alone
    pa.field("dup_reason", pa.string()),         # why kept / duplicate of which sample_id
]
