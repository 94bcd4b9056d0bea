"""Columns written by `curate cluster`: which cluster of the kept set a sample falls in, and where
it lies on the 2-D map. Sizes, the small clusters and the seed are in the write's params."""
import pyarrow as pa

FIELDS = [
    pa.field("cluster", pa.int16()),     # 0 = largest cluster of the kept samples; null without an embedding
    pa.field("map_x", pa.float32()),     # first principal component of the embedding (fitted on the kept)
    pa.field("map_y", pa.float32()),     # second principal component
]
