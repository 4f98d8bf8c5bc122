"""Training: the typed run config, the RLlib algorithm built from it, the run directory, metrics and the loop."""
