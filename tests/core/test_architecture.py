"""Apps depend one way (docs/architecture.md): every import of one app by another, including
imports inside functions and in migrations, goes down the dependency order, so there is no
import cycle between apps and ``core`` imports no other app."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

APPS_DIR = Path(settings.BASE_DIR) / "apps"

#: Bottom to top. An app may import only apps listed before it.
ORDER = ["core", "advisories", "inventory", "reviews", "wargaming", "ml", "ab_testing",
         "decisions", "notifications", "console", "demo"]


def _imported_apps(tree: ast.AST, apps: set[str]):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "apps":  # from apps import reviews
                names = [f"apps.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "apps" and len(parts) > 1 and parts[1] in apps:
                yield parts[1], node.lineno


def app_imports() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) → where, for every import of one app by another."""
    apps = {p.name for p in APPS_DIR.iterdir() if (p / "__init__.py").exists()}
    edges: dict[tuple[str, str], list[str]] = {}
    for app in sorted(apps):
        for path in sorted((APPS_DIR / app).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for imported, line in _imported_apps(tree, apps):
                if imported != app:
                    edges.setdefault((app, imported), []).append(
                        f"{path.relative_to(APPS_DIR.parent)}:{line}")
    return edges


def test_every_app_is_in_the_documented_order():
    apps = {p.name for p in APPS_DIR.iterdir() if (p / "__init__.py").exists()}
    assert apps == set(ORDER)
    installed = [a.split(".")[1] for a in settings.INSTALLED_APPS if a.startswith("apps.")]
    assert installed == ORDER, "INSTALLED_APPS lists the apps in dependency order"


def test_imports_go_down_the_order_only():
    upward = {
        f"{a} -> {b}": where for (a, b), where in app_imports().items()
        if ORDER.index(b) > ORDER.index(a)
    }
    assert upward == {}


def test_core_imports_no_other_app():
    assert [edge for edge in app_imports() if edge[0] == "core"] == []


def test_no_import_cycle_between_apps():
    graph: dict[str, set[str]] = {}
    for a, b in app_imports():
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if state.get(nxt) is None and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    cycles = [c for app in sorted(graph) if state.get(app) is None
              and (c := visit(app, [])) is not None]
    assert cycles == []


def test_the_walker_sees_imports_inside_functions(tmp_path):
    source = "def f():\n    from apps.reviews.models import APV\n    import apps.ml.services\n"
    found = sorted(app for app, _ in _imported_apps(ast.parse(source), {"reviews", "ml"}))
    assert found == ["ml", "reviews"]
