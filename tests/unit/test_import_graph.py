"""The shape of the code, read from its import statements (function-level imports included): the
db package has no import cycle, and nothing the services run (api, db, worker, jobspec, the shared
traindock modules) imports the command line's modules."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "db", "jobspec", "traindock", "worker")
CLI = "traindock.cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in modules}
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]], within: str) -> list[list[str]]:
    nodes = sorted(name for name in edges if name.startswith(within))
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if not target.startswith(within):
                continue
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in nodes:
        if node not in state:
            visit(node, [node])
    return found


def test_the_db_package_has_no_import_cycle():
    assert cycles(graph(), "db.") == []


def test_the_check_finds_a_cycle():
    assert cycles({"db.a": {"db.b"}, "db.b": {"db.c"}, "db.c": {"db.a"}}, "db.") == [["db.a", "db.b", "db.c", "db.a"]]


def test_services_never_import_the_command_line():
    edges = graph()
    cli = {name for name in edges if name == CLI or name.startswith(CLI + ".")}
    assert cli, "the command line's package moved: update CLI"
    offenders = {name: sorted(targets & cli) for name, targets in edges.items()
                 if name not in cli and targets & cli}
    assert offenders == {}
