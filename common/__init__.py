"""The layer under every package: user errors as one line, atomic writes, output-path checks, the
CLI frame, and the process pool. It imports nothing heavy (no pandas, no torch), so the GAN trainer
and the curation stages share it without pulling each other's libraries in."""
