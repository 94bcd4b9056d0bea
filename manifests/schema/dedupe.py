"""Columns written by the `dedupe` stage."""
import pyarrow as pa

FIELDS: list[pa.field] = []
