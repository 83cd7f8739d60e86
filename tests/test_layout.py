"""The package's shape, as the README's Layout section states it: no import cycles, the layers import only
downwards (core knows no task; tasks know no deployment), no function over 45 lines, and every import inside a
function says why it is there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import repo_root

SRC = repo_root() / "src" / "bertlstm"
LAYERS = ["core", "tasks", "deploy"]  # a module may import its own layer and those before it, never after
BUILDS_ON = {("document", "classify"), ("student", "classify")}  # a task builds on the one it refines (or reads)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The bertlstm modules ``path`` imports (relative imports resolved), wherever in the file."""
    name, found = module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if _type_checking(block) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {
            t for t in targets if t.startswith("bertlstm") and (SRC.parent / (t.replace(".", "/") + ".py")).exists()
        }
        found |= {t for t in targets if (SRC.parent / t.replace(".", "/") / "__init__.py").exists()}
    return found - {name}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in SRC.rglob("*.py")}


def test_no_import_cycles() -> None:
    edges, state, cycles = graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_import_downwards_only() -> None:
    """core imports no task and nothing of deployment; tasks import nothing of deployment; a task imports no
    other task but the one it refines (documents: classification)."""
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            low, high = layer(module), layer(target)
            if low is not None and high is not None and high > low:
                wrong.append(f"{module} -> {target}")
            task, other = module.split(".")[2:3], target.split(".")[2:3]
            pair = (task[0], other[0]) if task and other else None
            if low == high == 1 and task != other and "registry" not in (task + other) and pair not in BUILDS_ON:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_function_is_over_45_lines() -> None:
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 45:
                long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert long == []


def test_every_import_inside_a_function_says_why() -> None:
    """Function-level imports are for optional extras and heavy libraries loaded on demand: the import (or the
    first of a run of imports) carries a comment with the reason."""
    silent, statement = [], re.compile(r"\s*(from \S+ )?import ")
    for path in SRC.rglob("*.py"):
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    k = node.lineno - 1
                    while "#" not in lines[k] and statement.match(lines[k - 1]):
                        k -= 1
                    if "#" not in lines[k]:
                        silent.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert silent == []
