"""Physics: the MuJoCo scene, pure task geometry and domain-randomization sampling."""
