"""LeRobot datasets: the v2.1 / v3.0 format, recording from the sim, replay."""
