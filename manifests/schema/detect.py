"""Columns written by the `detect` stage."""
import pyarrow as pa

FIELDS: list[pa.field] = []
