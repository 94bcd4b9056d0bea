"""Columns written by the `review` stage."""
import pyarrow as pa

FIELDS: list[pa.field] = []
