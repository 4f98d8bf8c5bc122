"""Gymnasium environments: the paper task and its residual composition over a base policy."""
