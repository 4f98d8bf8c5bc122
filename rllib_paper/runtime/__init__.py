"""Shared run utilities, each once: atomic files, provenance, Ray start-up, storage URIs, cluster jobs."""
