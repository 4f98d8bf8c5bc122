"""Benchmarks: ratios measured side by side in one run; the last printed line is JSON."""
