"""The house plan holds: imports run one way, from the edges to the core, with no loop, and the
sans-IO core imports nothing else of the emulator (and never Twisted).  Read from the source with
ast, imports inside functions included (a lazy import is still a dependency)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "emulator"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: dict) -> set[str]:
    """The emulator modules C{path} imports, at any depth of its code."""
    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(resolve(a.name) for a in node.names if a.name.startswith("emulator"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("emulator"):
            found.update(resolve(f"{node.module}.{a.name}") or resolve(node.module) for a in node.names)
    return found - {None}


def graph() -> dict[str, set[str]]:
    known = modules()
    # A package's face (its __init__) may name its own modules; an import of the
    # package itself is an import of its face.
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_the_core_imports_nothing_else_of_the_emulator_nor_twisted():
    """emulator/core is sans-IO: no other emulator package, no Twisted, no sockets or files modules."""
    for name, path in modules().items():
        if not name.startswith("emulator.core"):
            continue
        outside = {m for m in imports(path, modules()) if not m.startswith("emulator.core") and m != "emulator"}
        assert not outside, (name, outside)
        text = path.read_text(encoding="utf-8")
        assert "import twisted" not in text and "from twisted" not in text, name


def test_there_is_no_import_loop_between_packages():
    """No two packages of emulator/ import each other, directly or round a longer loop (module-level
    or lazy imports alike): the layers of docs/design.md."""
    def package(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2])

    edges: dict[str, set[str]] = {}
    for name, deps in graph().items():
        for dep in deps:
            if package(dep) != package(name) and package(dep) != "emulator":
                edges.setdefault(package(name), set()).add(package(dep))
    seen, path = set(), []

    def visit(node: str) -> None:
        assert node not in path, " -> ".join(path[path.index(node):] + [node])
        if node in seen:
            return
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            visit(nxt)
        path.pop()
        seen.add(node)

    for node in sorted(edges):
        visit(node)
