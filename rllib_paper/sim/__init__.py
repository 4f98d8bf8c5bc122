"""Simulation: the MuJoCo scene, task geometry, domain randomization, kinematics and the observation layout."""
