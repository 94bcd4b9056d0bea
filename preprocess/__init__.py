"""Square, resize and pack curated crops for the trainer."""
