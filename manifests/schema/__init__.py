"""The manifest schema: every column any stage writes, with its Arrow type.

Each stage declares its columns in its own module here (`scan`, `repair`,
`detect`, ...). `COLUMNS` is their union; `REQUIRED` are the columns every
manifest has from `curate scan` on. Bump `SCHEMA_VERSION` when a column
changes type or meaning (adding a nullable column does not need a bump).
"""
import pyarrow as pa

from . import cluster, core, dedupe, detect, embed, preprocess, repair, review, score, text

SCHEMA_VERSION = 1

STAGE_COLUMNS: dict[str, list[pa.Field]] = {
    "scan": core.FIELDS,
    "repair": repair.FIELDS,
    "detect": detect.FIELDS,
    "dedupe": dedupe.FIELDS,
    "score": score.FIELDS,
    "embed": embed.FIELDS,
    "text": text.FIELDS,
    "cluster": cluster.FIELDS,
    "review": review.FIELDS,
    "preprocess": preprocess.FIELDS,
}

COLUMNS: dict[str, pa.Field] = {}
for _stage, _fields in STAGE_COLUMNS.items():
    for _f in _fields:
        if _f.name in COLUMNS:
            raise RuntimeError(f"column {_f.name!r} declared twice (stage {_stage})")
        COLUMNS[_f.name] = _f

REQUIRED: tuple[str, ...] = core.REQUIRED

