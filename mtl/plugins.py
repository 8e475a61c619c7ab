"""Plug-in modules outside the package: imported by name before configs are checked, recorded with each run.

`mtl --plugin MODULE` (any subcommand, repeatable) and the `MTL_PLUGINS` environment variable
(comma-separated module names) name modules to import, as `pytest -p MODULE` does; importing one
registers its approaches, backbones, loss weightings, label sources or detectors. A run lists the
plug-ins that were loaded in `plugins.json` beside its `config.json`, so `mtl evaluate`, `mtl predict`
and `mtl export` import them again before they load its models. A run without that file (every run
made before plug-ins were recorded) needs none.
"""

import importlib
import json
import os
from pathlib import Path

from mtl.errors import UserError

ENVIRONMENT_VARIABLE = "MTL_PLUGINS"
PLUGINS_FILE = "plugins.json"  # in a run directory

_loaded: list[str] = []  # in the order they were imported


def requested(named: list[str] | None) -> list[str]:
    """The modules `MTL_PLUGINS` names, then those of `--plugin`, each once."""
    from_environment = os.environ.get(ENVIRONMENT_VARIABLE, "").split(",")
    modules = [module.strip() for module in [*from_environment, *(named or [])]]
    return list(dict.fromkeys(module for module in modules if module))


def load(modules: list[str], needed_by: str | None = None) -> None:
    """Import each module once; one that cannot be imported is a UserError naming it."""
    for module in modules:
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as error:
            what = f"Plug-in module '{module}'"
            if needed_by:
                what = f"Run '{needed_by}' was made with plug-in module '{module}', which"
            raise UserError(f"{what} cannot be imported ({error}); install it or put its folder on PYTHONPATH.") from None
        _loaded.append(module)


def loaded() -> list[str]:
    return list(_loaded)


def record(run_dir: Path) -> None:
    """Write the loaded plug-ins into `run_dir`, if any: its models may hold their layers."""
    from mtl.runs import write_json

    if _loaded:
        write_json(Path(run_dir) / PLUGINS_FILE, loaded())


def load_for_run(run_dir: Path) -> None:
    """Import the plug-ins a run was made with, before its config is checked or its models loaded."""
    path = Path(run_dir) / PLUGINS_FILE
    if not path.is_file():
        return
    try:
        modules = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        modules = None
    if not isinstance(modules, list) or not all(isinstance(module, str) for module in modules):
        raise UserError(f"'{path}' is not a list of plug-in module names.")
    load(modules, needed_by=str(run_dir))
