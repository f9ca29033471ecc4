"""The dependency arrows of docs/architecture.md, checked on every module's imports (ast).

`outrider -> api, worker -> shared`: api/ never imports worker/ (nor Playwright or
BeautifulSoup: the web process must not load them), shared/ imports none of api/, worker/,
outrider/, nothing outside outrider/ imports outrider/, and only shared/queue.py and worker/
import arq. Every import counts, wherever it sits (function bodies and TYPE_CHECKING blocks
too), and so does `importlib.import_module("...")` with a literal name. The application
packages are checked; tests/ and benchmarks/ may reach into anything, outrider/ included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "worker", "shared", "outrider", "migrations")

# (who, which top-level packages it must not import, why)
RULES: tuple[tuple[str, frozenset[str], str], ...] = (
    ("api", frozenset({"worker", "playwright", "bs4"}), "the web process stays light"),
    (
        "api",
        frozenset({"outrider_client"}),
        "the client talks to the API; the API never needs it",
    ),
    ("worker", frozenset({"outrider_client"}), "the client is for callers of the API"),
    ("shared", frozenset({"outrider_client"}), "the client is for callers of the API"),
    (
        "shared",
        frozenset({"api", "worker", "outrider", "migrations"}),
        "shared/ is the bottom layer",
    ),
    ("api", frozenset({"outrider"}), "outrider/ is the composition root"),
    ("worker", frozenset({"outrider"}), "outrider/ is the composition root"),
    ("migrations", frozenset({"outrider"}), "outrider/ is the composition root"),
)
ARQ_ALLOWED = ("shared.queue", "worker")


@dataclass(frozen=True)
class Violation:
    module: str
    imported: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported} ({self.why})"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    if level == 0:
        return name or ""
    parts = module.split(".")
    package = parts if is_package else parts[:-1]
    if level > len(package):
        raise ValueError(f"{module}: relative import beyond the top-level package")
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[tuple[str, int]]:
    """Every module that `source` (the text of `module`) imports, with its line."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            yield base, node.lineno
            for alias in node.names:  # `from pkg import submodule`
                if alias.name != "*":
                    yield f"{base}.{alias.name}", node.lineno
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield first.value, node.lineno


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def check(module: str, source: str, is_package: bool = False) -> list[Violation]:
    """The wrong arrows out of one module."""
    found: dict[tuple[int, str], Violation] = {}  # one per statement and rule
    for imported, line in imports_of(source, module, is_package):
        top = imported.split(".")[0]
        whys = [
            why for owner, forbidden, why in RULES if _within(module, owner) and top in forbidden
        ]
        if top == "arq" and not any(_within(module, p) for p in ARQ_ALLOWED):
            whys.append("arq stays behind shared/queue.py")
        for why in whys:
            found.setdefault((line, why), Violation(module, imported, line, why))
    return list(found.values())


def project_modules(root: Path = ROOT) -> Iterator[tuple[str, Path, bool]]:
    """(dotted name, path, is a package) for every module of the application packages."""
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            yield ".".join(parts), path, is_package


def test_every_arrow_points_the_right_way() -> None:
    modules = list(project_modules())
    names = {name for name, _, _ in modules}
    assert {"api.app", "worker.main", "shared.queue", "outrider.cli"} <= names  # walked them all
    violations = [
        violation
        for name, path, is_package in modules
        for violation in check(name, path.read_text(encoding="utf-8"), is_package)
    ]
    assert violations == [], "wrong dependency arrows:\n" + "\n".join(map(str, violations))


def import_graph() -> dict[str, set[str]]:
    """Which project modules each project module imports (any import, anywhere in it)."""
    modules = list(project_modules())
    names = {name for name, _, _ in modules}
    graph: dict[str, set[str]] = {}
    for name, path, is_package in modules:
        found = {imported for imported, _ in imports_of(path.read_text(), name, is_package)}
        graph[name] = {imported for imported in found if imported in names and imported != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_module_imports_back_into_its_importers() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]


# --- the checker itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "imported"),
    [
        ("api.routes.jobs", "from worker.runner import run_job", "worker.runner"),
        ("api.services.submit", "import worker", "worker"),
        ("api.services.submit", "def f():\n    import bs4\n", "bs4"),
        ("api.app", "from playwright.async_api import async_playwright", "playwright.async_api"),
        ("api.deps", "from arq.connections import ArqRedis", "arq.connections"),
        ("api.deps", "if TYPE_CHECKING:\n    from arq import Retry\n", "arq"),
        ("shared.models", "from api.schemas import JobOut", "api.schemas"),
        ("shared.models", "from api import schemas", "api"),
        ("shared.queue", "import outrider.dev", "outrider.dev"),
        ("shared.repositories.job", "from outrider import cli", "outrider"),
        ("shared.egress", "import arq", "arq"),
        ("worker.main", "from outrider.cli import app", "outrider.cli"),
        ("outrider.cli", "import arq.worker", "arq.worker"),
        ("shared.logging", "importlib.import_module('worker.main')", "worker.main"),
        ("api.app", "__import__('worker')", "worker"),
    ],
)
def test_checker_catches_a_wrong_arrow(module: str, source: str, imported: str) -> None:
    violations = check(module, source)
    assert [v.imported for v in violations][:1] == [imported], violations


def test_checker_resolves_imports_relative_to_the_package() -> None:
    source = "from . import job\nfrom .. import settings\nfrom ..queue import enqueue\n"
    assert list(imports_of(source, "shared.repositories", is_package=True)) == [
        ("shared.repositories", 1),
        ("shared.repositories.job", 1),
        ("shared", 2),
        ("shared.settings", 2),
        ("shared.queue", 3),
        ("shared.queue.enqueue", 3),
    ]
    in_a_module = list(imports_of(source, "shared.repositories.execution"))
    assert ("shared.repositories.job", 1) in in_a_module
    assert ("shared.queue", 3) in in_a_module
    with pytest.raises(ValueError, match="beyond"):
        list(imports_of("from ...worker import main", "api.routes.jobs"))


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("shared.queue", "from arq.connections import ArqRedis"),
        ("worker.main", "from arq import Worker"),
        ("worker.engines.http", "from ..retry import JobError"),
        ("outrider.cli", "from worker.main import run\nfrom api.app import create_app"),
        ("outrider.dev", "from outrider.cli import app"),
        ("api.routes.jobs", "from shared.queue import JobQueue"),
        ("api.routes.jobs", "from api.workerish import x\nimport arqueology"),
        ("shared.models", "from sqlalchemy import select"),
    ],
)
def test_checker_accepts_the_allowed_arrows(module: str, source: str) -> None:
    assert check(module, source) == []


def test_checker_sees_the_real_tree(tmp_path: Path) -> None:
    bad = tmp_path / "shared" / "sneaky.py"
    bad.parent.mkdir()
    bad.write_text("def later():\n    from worker.state import WorkerState\n")
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    modules = list(project_modules(tmp_path))
    assert [(name, is_package) for name, _, is_package in modules] == [("shared.sneaky", False)]
    name, path, is_package = modules[0]
    (violation,) = check(name, path.read_text(), is_package)
    assert (violation.module, violation.imported, violation.line) == (
        "shared.sneaky",
        "worker.state",
        2,
    )
