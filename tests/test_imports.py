"""The package's shape: a pure core that does no I/O, no import cycle, no file over 400 lines.

Everything is found by walking ``service/`` when the tests run, so a module added, moved or
split is checked without touching this file.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "service"
MAX_LINES = 400

#: Modules that do I/O, or exist to: a name here, or any submodule of it. ``logging`` is
#: here because its handlers write to streams and files (and it starts ``threading``).
IO_MODULES = (
    *("socket", "ssl", "select", "selectors", "asyncio", "http", "urllib.request"),
    *("httpx", "httpcore", "h11", "anyio", "starlette", "uvicorn"),
    *("threading", "_thread", "concurrent", "multiprocessing", "subprocess", "queue"),
    *("sqlite3", "_sqlite3", "yaml"),
    *("pathlib", "tempfile", "shutil", "glob", "fileinput", "mmap", "logging"),
)
#: Also I/O, but the standard library's pure modules load them too (``inspect`` loads
#: ``os``), so only the package's own source is checked for them and the builtins.
IO_IN_SOURCE = (*IO_MODULES, "os", "io")
IO_BUILTINS = frozenset({"open", "print", "input"})

#: Pure by design: parsing, the rules, the fold and the render.
PURE = ("service.opsgenie", "service.timestamps", "service.mapping", "service.translate")
FOLDING = ("service.folding",)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name, packages by their ``__init__``."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


@dataclass(frozen=True)
class Import:
    """One imported name: ``module`` is what Python loads; ``typing_only`` when under
    ``if TYPE_CHECKING:``, which never runs."""

    module: str
    line: int
    typing_only: bool


def imports(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import in the module, at any depth (a function's lazy import included)."""
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, typing_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                # ``from service import cli`` loads the module ``service.cli``.
                submodule = f"{base}.{alias.name}"
                found.append(
                    Import(submodule if submodule in known else base, node.lineno, typing_only)
                )
        for inner in ast.iter_child_nodes(node):
            visit(inner, typing_only)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _within(module: str, names: Iterable[str]) -> str | None:
    """The entry of ``names`` that ``module`` is or sits inside, if any."""
    return next((n for n in names if module == n or module.startswith(n + ".")), None)


def _packages_of(module: str) -> list[str]:
    """``service.store.sqlite`` runs ``service`` and ``service.store`` first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def folding_module() -> str:
    known = modules()
    found = [name for name in FOLDING if name in known]
    assert found, f"no folding module: expected one of {', '.join(FOLDING)}"
    return found[0]


# -- a pure core -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*PURE, "folding"])
def test_pure_modules_load_nothing_that_does_io(name: str) -> None:
    """Import the module alone in a fresh interpreter and list what came with it.

    ``-S`` keeps ``site`` (and the ``.pth`` files it runs) from loading modules first,
    which would hide them; the package and its dependencies are found through the path.
    What the bare interpreter holds already is left to the source check.
    """
    module = folding_module() if name == "folding" else name
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]; before = set(sys.modules);"
        f" import importlib; importlib.import_module({module!r});"
        " print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-S", "-c", code, str(ROOT), *sys.path],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    doing_io = sorted(m for m in loaded if _within(m, IO_MODULES))
    assert module in loaded
    assert doing_io == [], f"importing {module} loads modules that do I/O: {doing_io}"


@pytest.mark.parametrize("name", [*PURE, "folding"])
def test_pure_modules_and_what_they_import_do_no_io_in_their_source(name: str) -> None:
    """The source, read: also finds a lazy import inside a function, ``os``, ``io`` and
    the ``open``/``print`` builtins, which loading the module cannot show. Imports under
    ``TYPE_CHECKING`` never run, so they do no I/O."""
    known = modules()
    start = folding_module() if name == "folding" else name
    seen: set[str] = set()
    queue = [start, *_packages_of(start)]
    problems: list[str] = []
    while queue:
        current = queue.pop()
        if current in seen:
            continue
        seen.add(current)
        path = known[current]
        where = path.relative_to(ROOT)
        for found in imports(current, path, known):
            if found.typing_only:
                continue
            if found.module in known:
                queue += [found.module, *_packages_of(found.module)]
            elif _within(found.module, IO_IN_SOURCE):
                problems.append(f"{where}:{found.line} imports {found.module}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        problems += [
            f"{where}:{node.lineno} uses {node.id}()"
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and node.id in IO_BUILTINS
        ]
    assert problems == [], f"{start} reaches I/O:\n" + "\n".join(problems)


# -- the import graph ------------------------------------------------------------------------


def test_no_import_cycle_among_service_modules() -> None:
    """Every import counts, ``TYPE_CHECKING`` and lazy ones too: a cycle that only type
    checking or a function closes is still two modules that each need the other, and
    hiding it under ``TYPE_CHECKING`` is how such a cycle usually survives."""
    known = modules()
    graph = {
        name: sorted({i.module for i in imports(name, path, known) if i.module in known} - {name})
        for name, path in known.items()
    }
    cycles = [" -> ".join([*c, c[0]]) for c in _cycles(graph)]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


#: The package in layers, bottom up, as an alert travels: what every part stands on, the
#: pure domain, storage, observation, the upstreams, the work done off the request path,
#: the HTTP edges, and the process that wires them. A module imports only from its own
#: layer or one below; a new module must be placed here, which says where it belongs.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundations",
        (
            *("service", "service.errors", "service.settings", "service.strict_json"),
            *("service.timestamps", "service.backoff", "service.redaction", "service.log_format"),
            "service.logs",
            *("service.crypto", "service.http_protocol", "service.request_body", "service.auth"),
            *("service.characters", "service.singleton"),
        ),
    ),
    (
        "domain",
        (
            *("service.webhook_wire", "service.opsgenie", "service.mapping"),
            *("service.translate", "service.folding", "service.webhook_schema"),
            *("service.names", "service.account_keys", "service.destinations"),
        ),
    ),
    ("configuration", ("service.rules_file",)),
    (
        "store",
        (
            *("service.store", "service.store.rows", "service.store.composed"),
            "service.store.sqlite",
            "service.store.sqlite.schema",
            *("service.store.sqlite.engine", "service.store.sqlite.intake"),
            "service.store.sqlite.intake_process",
            *("service.store.sqlite.states", "service.store.sqlite.event_log"),
            "service.store.sqlite.outbox",
            "service.store.sqlite.service_objects",
            *("service.store.postgres", "service.store.postgres.schema"),
            *("service.store.postgres.engine", "service.store.postgres.intake"),
            *("service.store.postgres.states", "service.store.postgres.claims"),
            *("service.store.postgres.outbox", "service.store.postgres.service_objects"),
            *("service.store.postgres.dx_board", "service.store.postgres.reconcile_checks"),
            "service.store.postgres.singleton",
            "service.store.sqlite.reconcile_checks",
        ),
    ),
    ("observation", ("service.metrics",)),
    (
        "upstreams",
        (
            *("service.upstream", "service.dx", "service.egress", "service.alert_api"),
            *("service.jsm_api", "service.opsgenie_api"),
            "service.accounts",
            *("service.rate_limit", "service.pause", "service.dx_gate"),
        ),
    ),
    (
        "work",
        (
            *("service.delivery_policy", "service.delivery", "service.enrichment"),
            *("service.delivery_leases", "service.delivery_send"),
            *("service.retention", "service.backfill_report", "service.backfill"),
            "service.reconcile",
        ),
    ),
    (
        "edges",
        (
            *("service.http_errors", "service.admin_route", "service.webhooks"),
            *("service.services_api", "service.deliveries_api", "service.backfill_api"),
            *("service.delivery_views", "service.probes", "service.openapi"),
            *("service.openapi_admin", "service.openapi_deliveries"),
        ),
    ),
    (
        "process",
        (
            *("service.app", "service.server", "service.config_check"),
            *("service.delivery_text", "service.admin_client", "service.cli", "service.__main__"),
        ),
    ),
)


def test_every_module_has_its_layer_and_imports_none_above_it() -> None:
    known = modules()
    layer_of = {module: n for n, (_, members) in enumerate(LAYERS) for module in members}
    assert sorted(set(known) - set(layer_of)) == [], "modules not placed in LAYERS"
    assert sorted(set(layer_of) - set(known)) == [], "LAYERS names modules that do not exist"
    upward = [
        f"{name} ({LAYERS[layer_of[name]][0]}) imports {i.module} "
        f"({LAYERS[layer_of[i.module]][0]}) at line {i.line}"
        for name, path in known.items()
        for i in imports(name, path, known)
        if i.module in layer_of and layer_of[i.module] > layer_of[name]
    ]
    assert upward == [], "imports against the data path:\n" + "\n".join(upward)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                components.append(component)

    for node in graph:
        if node not in index:
            connect(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, list[str]], members: set[str]) -> list[str]:
    """A shortest cycle through the component's first module, to name in the failure."""
    start = min(members)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for target in graph[node]:
                if target == start:
                    return paths[node]
                if target in members and target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    return sorted(members)  # unreachable for a real component; names it anyway


def test_the_graph_sees_imports_of_every_form(tmp_path: Path) -> None:
    """The walk itself: relative, ``from package import module``, lazy and typing-only."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "from .c import thing\n"
        "import d.e\n"
        "if TYPE_CHECKING:\n"
        "    from service import f\n"
        "def later():\n"
        "    import g\n",
        encoding="utf-8",
    )
    known = {name: source for name in ("service.pkg.b", "service.f")}
    found = {(i.module, i.typing_only) for i in imports("service.pkg.a", source, known)}
    assert found == {
        ("typing", False),
        ("service.pkg.b", False),
        ("service.pkg.c", False),
        ("d.e", False),
        ("service.f", True),
        ("g", False),
    }


def test_cycles_are_found_and_named() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": []}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


# -- file size -------------------------------------------------------------------------------


def test_every_file_under_service_fits_400_lines() -> None:
    """One concept per module: a file past 400 lines is holding two."""
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted(PACKAGE.rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"files over {MAX_LINES} lines: {json.dumps(too_long)}"


def test_every_exception_class_lives_in_the_error_tree() -> None:
    """``service/errors.py`` holds every exception the package defines, so the tree in its
    docstring is the whole list and one module turns it into answers."""
    import builtins

    from service import errors

    exception_names = {
        name
        for name, value in [*vars(builtins).items(), *vars(errors).items()]
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    elsewhere = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
        for name, path in modules().items()
        if name != "service.errors"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(
            (base.id if isinstance(base, ast.Name) else getattr(base, "attr", None))
            in exception_names
            for base in node.bases
        )
    ]
    assert elsewhere == [], "exception classes outside service/errors.py"


def test_the_readme_layout_names_every_module() -> None:
    """The README's Layout is where a newcomer looks a behaviour up by its name."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Development") :]
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py") and f" {path.name} " not in layout
    ]
    assert missing == [], "modules the README's Layout does not name"
