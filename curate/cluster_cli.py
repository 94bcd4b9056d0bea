"""`curate cluster --manifest M`: a thin CLI over `curate.cluster.cluster_manifest`."""
from __future__ import annotations

from pathlib import Path

import click

from .cluster import ClusterOptions

D = ClusterOptions()


@click.command("cluster", epilog="""\b
Examples:
  curate cluster --manifest work/manifest.parquet
  curate cluster --manifest work/manifest.parquet --clusters 12
""")
@click.option("--manifest", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Manifest with embeddings (curate embed), rewritten in place.")
@click.option("--clusters", type=int, default=D.clusters, show_default=True, help="k of k-means.")
@click.option("--seed", type=int, default=D.seed, show_default=True, help="k-means' seed.")
def cluster(manifest, clusters, seed):
    """Clusters of the kept samples and a 2-D map of every embedded one, to see the balance."""
    from common.errors import UserError

    from .cluster import ClusterSummary, cluster_manifest

    if not manifest.exists():
        raise UserError(f"--manifest {manifest}: no such file")
    s = ClusterSummary.of(cluster_manifest(manifest, ClusterOptions(clusters=clusters, seed=seed)))
    click.echo(f"{manifest}: {len(s.sizes)} clusters of {s.fitted_on} kept samples")
    for c, n in s.sizes.items():
        click.echo(f"  cluster {c:>3}: {n:>6}{'  (small)' if c in s.small else ''}")
