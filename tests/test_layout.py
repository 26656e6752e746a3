"""The package's shape: one ``gatewatch`` namespace, no import circle, the dashboard apart from the CLI."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("flows", "detectors", "sinks", "dashboards")


def _modules() -> dict[str, Path]:
    """Every module of the four folders, by its installed name."""
    found = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(("gatewatch", *parts))] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The gatewatch modules ``path`` imports: at its top, inside functions, or by name through importlib."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod
            out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            out.add(getattr(node.args[0], "value", ""))  # importlib.import_module("gatewatch....")
    return {m for m in out if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_no_module_imports_outside_the_gatewatch_namespace():
    stray = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            stray.update({f"{name}: {n}": path for n in names if n.split(".")[0] in FOLDERS})
    assert not stray


def test_no_import_circle():
    graph = _graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_dashboard_does_not_import_the_command_line():
    graph = _graph()
    seen, todo = set(), [m for m in graph if m.startswith("gatewatch.dashboards")]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    assert not {m for m in seen if m.startswith("gatewatch.flows.cli")}
    assert "gatewatch.flows.control.decisions" in seen  # what its buttons call


def test_every_package_folder_is_installed():
    configured = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(("gatewatch", *d.relative_to(ROOT).parts))
        for f in FOLDERS
        for d in [ROOT / f, *(ROOT / f).rglob("*")]
        if d.is_dir() and d.name != "__pycache__" and any(p.suffix in (".py", ".txt") for p in d.iterdir())
    }
    assert configured == folders


def test_the_wheel_installs_only_the_gatewatch_package(tmp_path):
    source = tmp_path / "src"  # a copy: setuptools builds in the source tree (build/, *.egg-info)
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("gatewatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"gatewatch"}
    for expected in ("gatewatch/dashboards/views/overview.py", "gatewatch/flows/data/admin_interfaces.txt", "gatewatch/flows/cli/__init__.py"):
        assert expected in names
