"""Rewrite JSON files written before the plug-ins carried their options into the new form, in place.

    python experiments/migrate_configs.py FILE_OR_FOLDER...

`mtl` still reads the old fields (`model.width`, `options.dwa_temperature`, ...; the list is
`mtl.config.OLD_PLUGIN_FIELDS`), so nothing has to be rewritten; this makes the files say what a
config says today. Every config found in a file is rewritten: a run's `config.json`, a comparison's
base, variants and saved `comparison.json`, a search's `base_config`. Nothing else in a file is
changed (a search space's hyperparameter names such as "width" are names, not fields), and a file
without old fields is left untouched. Folders are searched for `*.json`.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl.config import migrated  # noqa: E402

SECTIONS = ("model", "options")


def looks_like_config(node) -> bool:
    return isinstance(node, dict) and any(isinstance(node.get(section), dict) for section in SECTIONS)


def migrate(node, within: dict | None = None):
    """`node` with every config in it migrated; a comparison's variants are read within their base."""
    if not isinstance(node, dict):
        return [migrate(item) for item in node] if isinstance(node, list) else node
    if isinstance(node.get("base"), dict) and isinstance(node.get("variants"), dict):
        variants = {name: migrated(variant, within=node["base"]) for name, variant in node["variants"].items()}
        return {**node, "base": migrate(node["base"]), "variants": variants}
    if looks_like_config(node):
        return migrated(node, within=within)
    return {key: migrate(value) for key, value in node.items()}


def json_files(paths: list[Path]) -> list[Path]:
    files = []
    for path in paths:
        files.extend(sorted(path.rglob("*.json")) if path.is_dir() else [path])
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="JSON files, or folders searched for them")
    args = parser.parse_args(argv)
    changed = 0
    for path in json_files(args.paths):
        values = json.loads(path.read_text())
        new = migrate(values)
        if new != values:
            path.write_text(json.dumps(new, indent=2) + "\n")
            changed += 1
            print(f"migrated {path}")
    print(f"{changed} files migrated.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
