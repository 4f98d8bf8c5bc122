"""Tuning: sweep files (search spaces, schedulers) turned into Ray Tune runs of the training loop."""
