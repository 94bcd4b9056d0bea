"""Columns written by `curate review --pull` (the reviewer's tags) and `curate filter` (the verdict)."""
import pyarrow as pa

# Sample tags that are decisions; any other tag is kept in `review_tags` only.
DECISIONS = ("keep", "reject")

FIELDS = [
    pa.field("review_decision", pa.string()),         # keep | reject | null (not reviewed)
    pa.field("review_tags", pa.list_(pa.string())),   # every sample tag set in the App, sorted
    pa.field("keep", pa.bool_()),                     # the filter's verdict (human wins over rules)
    pa.field("reject_reason", pa.string()),           # rule name or "reviewer"; null when kept
]
