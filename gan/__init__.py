"""RaLSGAN trainer, generator and metrics (importable without curate's dependencies)."""
