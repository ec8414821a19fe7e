"""The layout holds: no import cycle, arrows only point down, a pure core, small modules.

Every ``import`` of every module under ``sidecar/`` is read with ``ast`` (those inside
functions and under ``TYPE_CHECKING`` too: a lazy import is still a dependency). The layers,
from the top::

    web, cli, demo      (what the outside world calls)
    wiring              (the only composition root)
    services            (accounts, throttling, devices, primary, notices, metrics, logs, ...)
    storage, config     (side by side)
    core                (pure: stdlib, pyotp, itsdangerous, sidecar.errors, itself)
    errors              (imports nothing)

A module may import its own layer and the layers below it, never one above.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sidecar"
MAX_LINES = 400

ERRORS, CORE, STORAGE_CONFIG, SERVICES, WIRING, TOP = range(6)
#: Each module's layer, by its dotted name or the package it is in (the longest match counts).
LAYERS: dict[str, int] = {
    "sidecar": TOP,
    "sidecar.__main__": TOP,
    "sidecar.cli": TOP,
    "sidecar.app_env": TOP,
    "sidecar.demo": TOP,
    "sidecar.web": TOP,
    "sidecar.wiring": WIRING,
    "sidecar.decision": SERVICES,
    "sidecar.passes": SERVICES,
    "sidecar.passkeys": SERVICES,
    "sidecar.accounts": SERVICES,
    "sidecar.throttle": SERVICES,
    "sidecar.audit": SERVICES,
    "sidecar.devices": SERVICES,
    "sidecar.states": SERVICES,
    "sidecar.bursts": SERVICES,
    "sidecar.primary": SERVICES,
    "sidecar.fetch": SERVICES,
    "sidecar.notify": SERVICES,
    "sidecar.metrics": SERVICES,
    "sidecar.logs": SERVICES,
    "sidecar.crypto": SERVICES,
    "sidecar.config": STORAGE_CONFIG,
    "sidecar.branding": STORAGE_CONFIG,  # what the branding keys mean and how they are checked
    "sidecar.storage": STORAGE_CONFIG,
    "sidecar.core": CORE,
    "sidecar.errors": ERRORS,
}
#: What the pure core may import besides the standard library, sidecar.errors and itself.
CORE_THIRD_PARTY = {"pyotp", "itsdangerous"}
#: Modules still over MAX_LINES, each with the move that splits it. The list only shrinks.
TOO_LONG_FOR_NOW: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every module ``name`` imports: sidecar modules by their full name, others by top package."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in MODULES)
    out = set()
    for target in found:
        if target.split(".")[0] == "sidecar":
            if target in MODULES and target not in (name, "sidecar"):
                out.add(target)
        elif target != "__future__":
            out.add(target.split(".")[0])
    return out


GRAPH = {name: imports_of(name) for name in MODULES}


def layer(name: str) -> int:
    matches = [prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")]
    assert matches, f"{name} has no layer: add it to LAYERS in {Path(__file__).name}"
    return LAYERS[max(matches, key=len)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node] & graph.keys()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_arrows_only_point_down(name: str) -> None:
    upward = sorted(target for target in GRAPH[name]
                    if target in MODULES and layer(target) > layer(name))
    assert upward == [], f"{name} (layer {layer(name)}) imports a layer above it"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) == CORE))
def test_the_core_is_pure(name: str) -> None:
    allowed = set(sys.stdlib_module_names) | CORE_THIRD_PARTY
    foreign = sorted(target for target in GRAPH[name]
                     if target not in allowed and target != "sidecar.errors"
                     and not target.startswith("sidecar.core"))
    assert foreign == [], f"{name} is in the pure core but imports {foreign}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("sidecar.storage")))
def test_storage_knows_no_config(name: str) -> None:
    """Storage and config sit side by side: storage takes plain values (``Limits``), no config."""
    assert not any(t.startswith("sidecar.config") for t in GRAPH[name]), name


def test_errors_import_nothing_of_the_sidecar_or_beyond_the_standard_library() -> None:
    assert GRAPH["sidecar.errors"] <= set(sys.stdlib_module_names)


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer(name)


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_modules_stay_small() -> None:
    too_long = {str(path.relative_to(ROOT)) for path in MODULES.values()
                if line_count(path) > MAX_LINES}
    assert too_long == set(TOO_LONG_FOR_NOW), (
        f"modules over {MAX_LINES} lines: split them (or, once split, drop them from "
        "TOO_LONG_FOR_NOW)")


def test_the_hot_path_does_not_load_py_webauthn() -> None:
    """py_webauthn and what it pulls in (7 MB of a process's memory) load at the first key
    ceremony, not with the app: most requests never need them."""
    import subprocess

    code = ("import sys, sidecar.web.app, sidecar.cli.serve, sidecar.wiring; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('webauthn', 'OpenSSL')))")
    found = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
    assert found == "[]"
