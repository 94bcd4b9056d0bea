"""The Parquet manifest: the contract every stage reads and writes."""
from .errors import ManifestError, UserError
from .ids import file_sha256, sample_id
from .io import Manifest, merge_columns, read_manifest, to_table, write_manifest
from .schema import COLUMNS, REQUIRED, SCHEMA_VERSION, STAGE_COLUMNS

__all__ = [
    "COLUMNS", "REQUIRED", "SCHEMA_VERSION", "STAGE_COLUMNS", "Manifest", "ManifestError",
    "UserError", "file_sha256", "merge_columns", "read_manifest", "sample_id", "to_table",
    "write_manifest",
]
