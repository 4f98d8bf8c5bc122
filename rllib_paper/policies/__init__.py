"""Base policies: what the residual corrects (zero, scripted pusher, later GR00T)."""
