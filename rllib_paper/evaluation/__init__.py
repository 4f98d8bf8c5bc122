"""Evaluation: one seeded episode function, the distributed evaluation over Ray, reports and statistics."""
