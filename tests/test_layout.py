"""The package's shape: stages import only lower stages, no import circle, each package says its job.

Function-level imports count too: a circle hidden inside a function is still a circle to a
reader (and to a dependency drawing).
"""

import ast
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rllib_paper"
# Lowest first; a module may import its own stage and the stages before it.
LAYERS = (
    ("resources", "config"),
    ("runtime",),
    ("sim",),
    ("policies",),
    ("envs",),
    ("residual",),
    ("training", "evaluation", "datasets", "imitation"),
    ("tuning", "experiment", "pack"),
    ("bench", "cli", "__main__"),
)
RANK = {stage: rank for rank, stages in enumerate(LAYERS) for stage in stages}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rllib_paper"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("rllib_paper"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_stage_imports_a_higher_one():
    upward = []
    for module, deps in _graph().items():
        if _stage(module) is None:
            continue  # the package root registers the gym ids; it sits above everything
        for dep in deps:
            if _stage(dep) is not None and RANK[_stage(dep)] > RANK[_stage(module)]:
                upward.append(f"{module} -> {dep}")
    assert not upward, upward
    assert set(RANK) >= {_stage(m) for m in _graph() if _stage(m)}, "a new stage needs a place in LAYERS"


def test_no_import_circle():
    graph, state, circles = _graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                circles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, circles


def test_each_package_states_its_job_in_one_sentence():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init} has no docstring"
        first = doc.split("\n\n")[0].replace("\n", " ")
        assert len(re.findall(r"[.!?](\s|$)", first)) == 1, f"{init}: {first!r}"


def test_the_wheel_lists_every_package_and_carries_the_top_level_data_folders():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    code = {_module(p) for p in PACKAGE.rglob("__init__.py")}
    data = {
        "rllib_paper.configs",
        "rllib_paper.policies.groot.configs",
        "rllib_paper.assets",
        "rllib_paper.tune_configs",
    }
    assert set(config["packages"]) == code | data
    assert config["package-dir"] == {"rllib_paper.assets": "assets", "rllib_paper.tune_configs": "tune_configs"}
