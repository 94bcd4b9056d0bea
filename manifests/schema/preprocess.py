"""Columns written by the `preprocess` stage."""
import pyarrow as pa

FIELDS: list[pa.field] = []
