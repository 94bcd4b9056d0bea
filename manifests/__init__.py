"""The Parquet manifest: the contract every stage reads and writes.

Light by design: `common.errors` and `common.clitools` import without
pandas or pyarrow (the GAN trainer runs on machines that lack them); the
reading and writing API is loaded on first use.
"""
from common.errors import ManifestError, UserError

_LAZY = {
    "Manifest": "io", "is_manifest": "io", "merge_columns": "io", "read_manifest": "io", "to_table": "io",
    "write_manifest": "io", "present": "paths",
    "file_sha256": "ids", "sample_id": "ids",
    "COLUMNS": "schema", "REQUIRED": "schema", "SCHEMA_VERSION": "schema", "STAGE_COLUMNS": "schema",
}

__all__ = ["ManifestError", "UserError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
