"""The layering: training core < lightning_gen.hub < zoo registry < command line, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import lightning_gen

PACKAGE = Path(lightning_gen.__file__).parent
CORE = ["_base.py", "gan.py", "vae.py", "losses.py", "networks", "data", "hub.py", "hub_format.py", "hub_checks.py", "model_card.py"]
ABOVE_THE_CORE = ("lightning_gen.zoo", "lightning_gen.metrics", "lightning_gen.sweep", "lightning_gen.cli")


def _imports(path: Path) -> set[str]:
    """Every module an ``import`` statement in ``path`` names (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _files(*entries: str) -> list[Path]:
    paths = [PACKAGE / entry for entry in entries]
    return sorted(p for path in paths for p in ([path] if path.is_file() else path.rglob("*.py")))


def test_the_training_core_and_the_hub_format_import_nothing_above_them():
    offenders = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in _files(*CORE)
        for name in _imports(path)
        if name.startswith(ABOVE_THE_CORE)
    }
    assert not offenders


def test_library_code_never_imports_the_command_line():
    library = [p for p in _files(".") if "cli" not in p.relative_to(PACKAGE).parts]
    assert not {f"{p.relative_to(PACKAGE)}" for p in library if any(n.startswith("lightning_gen.cli") for n in _imports(p))}
    assert not hasattr(__import__("lightning_gen.sampling", fromlist=["_"]), "main")  # the CLI moved to cli/sample.py


def _module_file(name: str) -> Path | None:
    parts = name.split(".")[1:]
    relative = Path(*parts)
    for candidate in (PACKAGE / relative / "__init__.py", PACKAGE / f"{relative}.py" if parts else PACKAGE):
        if name.startswith("lightning_gen") and candidate.is_file():
            return candidate
    return None


def _loaded_at_import(root: str) -> set[str]:
    """lightning-gen modules that ``import root`` loads: module-level imports, followed transitively."""
    seen, todo = set(), [root]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        parents = [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        for module in [*parents, name]:
            path = _module_file(module)
            if module in seen or path is None:
                continue
            seen.add(module)
            for node in ast.parse(path.read_text()).body:  # top level only: lazy imports in functions don't count
                if isinstance(node, ast.Import):
                    todo += [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return seen


def test_importing_the_library_loads_neither_the_zoo_nor_the_cli():
    # The package's public names are imported on first use: walk from each module that defines one.
    roots = {"lightning_gen", "lightning_gen.hub", "lightning_gen.sampling", *lightning_gen._LAZY_EXPORTS.values()}
    loaded = set().union(*map(_loaded_at_import, roots))
    assert {"lightning_gen.gan", "lightning_gen.hub", "lightning_gen.model_card"} <= loaded  # the walk works
    assert not {m for m in loaded if m.startswith(("lightning_gen.zoo", "lightning_gen.cli"))}
    assert "lightning_gen.zoo" in _loaded_at_import("lightning_gen.cli.zoo")  # and would see it if it were there


def test_the_hub_format_and_the_model_card_do_not_import_each_other():
    # hub_format holds what both need (file names, the config section); the mixin (hub.py) sits on both.
    def imports_of(name: str, *modules: str) -> set[str]:
        return {n for n in _imports(PACKAGE / name) if n in modules or n.startswith(tuple(f"{m}." for m in modules))}

    assert {n for n in _imports(PACKAGE / "hub_format.py") if n.startswith("lightning_gen")} <= {
        "lightning_gen._version", "lightning_gen._version.__version__"
    }  # the format's names depend on nothing
    assert not imports_of("hub_checks.py", "lightning_gen.hub", "lightning_gen.model_card")
    assert not imports_of("model_card.py", "lightning_gen.hub", "lightning_gen.hub_checks")
    assert imports_of("model_card.py", "lightning_gen.hub_format")  # the constants come from there


def test_modules_read_the_version_without_importing_the_package():
    def reads_the_package(path: Path) -> bool:  # `import lightning_gen` or `from lightning_gen import __version__`
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(alias.name == "lightning_gen" for alias in node.names):
                return True
            if isinstance(node, ast.ImportFrom) and node.module == "lightning_gen" and node.level == 0:
                if any(alias.name == "__version__" for alias in node.names):
                    return True
        return False

    readers = [p for p in _files(".") if "__version__" in p.read_text() and p.name not in ("__init__.py", "_version.py")]
    assert readers  # the search finds the modules that record the version
    assert not {f"{p.relative_to(PACKAGE)}" for p in readers if reads_the_package(p)}
