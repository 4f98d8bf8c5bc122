"""GR00T N1.5 as the base policy: mapping, wire protocol client and server, in-process backend.

Spec kinds (``policies/registry.py``): ``groot:tcp://HOST:PORT?config=MAPPING...`` for a GR00T
inference service (or our stand-in), ``groot-local:/path/to/model?config=MAPPING...`` for
Gr00tPolicy in this process; ``policy.py`` documents the options, docs/groot.md walks through them.
"""
