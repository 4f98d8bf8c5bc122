"""The residual: the RLModule (zero-initialised mean over the base) and loading it from a checkpoint."""
