"""Columns written by the `score` stage."""
import pyarrow as pa

FIELDS: list[pa.field] = []
