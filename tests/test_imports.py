"""The package's modules import one another without a cycle (module-level imports; an import
inside a function is a deliberate late one): every layer can be read and tested from below."""

import ast
from pathlib import Path

import siamese

SRC = Path(siamese.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (never imported when the code runs)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            continue
        yield node
        yield from _nodes(node)


def _imports(path: Path, modules: set[str], packages: set[str]) -> set[str]:
    """The package modules `path` imports at module level. A name taken from a package's
    __init__ (`from . import __version__`) is not counted: a package's own modules may read
    what its __init__ defines before it imports them."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in _nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:  # "from . import audio" names a module
                if f"{target}.{alias.name}" in modules:
                    out.add(f"{target}.{alias.name}")
            if target in modules and target not in packages:
                out.add(target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("siamese"):
            out.add(node.module)
    return out - {name}


def test_no_import_cycle():
    files = {_module(p): p for p in SRC.rglob("*.py")}
    packages = {m for m, p in files.items() if p.name == "__init__.py"}
    graph = {m: _imports(p, set(files), packages) for m, p in files.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
