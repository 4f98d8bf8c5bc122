"""Imitation learning: behaviour cloning of a chunked base policy from LeRobot datasets."""
