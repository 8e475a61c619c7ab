"""Imports run one way: every module of `mtl/` imports only from its own layer or below, as the
README's "Layers" list declares, and the module-level imports form no cycle.

The modules are parsed with `ast`, not imported, so this needs no TensorFlow. An import counts as
an edge to the module it names (`from mtl.weighting.base import register` reads
`mtl.weighting.base`), not to the packages above it that Python runs first.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mtl"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def declared_layers(readme: str) -> list[tuple[str, list[str]]]:
    """(name, paths) of each layer of the README's "### Layers" list, from the bottom."""
    section = readme.split("\n### Layers\n", 1)[1].split("\n#", 1)[0]
    items = re.findall(r"^\d+\. \*\*(.+?)\*\*(.*)$", section, flags=re.MULTILINE)
    return [(name, re.findall(r"`(mtl/[^`]*)`", rest)) for name, rest in items]


LAYERS = declared_layers((ROOT / "README.md").read_text())


def layer_of(module: str) -> int:
    """The index of the layer a module is in: its file's entry, else its closest folder's."""
    path = MODULES[module].relative_to(ROOT).as_posix()
    matches = [
        (len(entry), index)
        for index, (_, entries) in enumerate(LAYERS)
        for entry in entries
        if entry == path or (entry.endswith("/") and path.startswith(entry))
    ]
    if not matches:
        raise AssertionError(f"{path} is in no layer of the README's \"Layers\" list; add it there.")
    return max(matches)[1]


def _outside_functions(node: ast.AST):
    """The nodes under `node` that run when the module is imported: not those inside a function."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield child
            yield from _outside_functions(child)


def imports(module: str, inside_functions: bool) -> list[tuple[str, int]]:
    """(the mtl module imported, line) of each import in `module`: at module level, or anywhere."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = ast.walk(tree) if inside_functions else _outside_functions(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                package = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{package}.{base}" if base else package
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "mtl":
                continue
            while name not in MODULES:
                name = name.rpartition(".")[0]
            if name != module:
                found.append((name, node.lineno))
    return found


def upward_imports(inside_functions: bool) -> list[str]:
    return [
        f"{module} (layer {layer_of(module) + 1}, line {line}) imports {target} (layer {layer_of(target) + 1}, "
        f"{LAYERS[layer_of(target)][0]})"
        for module in MODULES
        for target, line in imports(module, inside_functions)
        if layer_of(target) > layer_of(module)
    ]


def test_the_readme_declares_layers_from_vocabulary_to_entry_points():
    assert len(LAYERS) >= 2
    assert "mtl/errors.py" in LAYERS[0][1]
    assert "mtl/cli.py" in LAYERS[-1][1]


def test_every_path_the_layers_name_exists_and_is_named_once():
    paths = [entry for _, entries in LAYERS for entry in entries]
    assert [path for path in paths if not (ROOT / path).exists()] == []
    assert len(paths) == len(set(paths))


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_module_level_imports_form_no_cycle():
    graph = {module: {target for target, _ in imports(module, inside_functions=False)} for module in MODULES}
    finished: set[str] = set()

    def visit(module: str, chain: list[str]) -> None:
        if module in chain:
            cycle = " -> ".join([*chain[chain.index(module):], module])
            pytest.fail(f"Import cycle: {cycle}")
        if module in finished:
            return
        for target in sorted(graph[module]):
            visit(target, [*chain, module])
        finished.add(module)

    for module in MODULES:
        visit(module, [])


def test_module_level_imports_go_to_the_same_layer_or_below():
    assert upward_imports(inside_functions=False) == []


def test_imports_inside_functions_go_to_the_same_layer_or_below():
    assert upward_imports(inside_functions=True) == []


def test_no_module_imports_its_own_package_init():
    """A package's `__init__` gathers its modules (registering the plug-ins); they import each other."""
    for module, path in MODULES.items():
        package = module.rpartition(".")[0]
        if path.name != "__init__.py" and package != "mtl":
            assert package not in {target for target, _ in imports(module, inside_functions=True)}, module


def test_only_config_and_plugins_import_modules_by_name():
    """config resolves its plug-in registries by dotted string, plugins imports the user's modules:
    the two imports the layers cannot see."""
    by_name = {
        module
        for module, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in {"import_module", "__import__"}
        or isinstance(node, ast.Name) and node.id in {"import_module", "__import__"}
    }
    assert by_name == {"mtl.config", "mtl.plugins"}
