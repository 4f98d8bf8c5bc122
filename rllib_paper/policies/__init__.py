"""Base policies: what the residual corrects (zero, scripted pusher, GR00T, a batched Ray actor), by name."""
