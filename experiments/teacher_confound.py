"""How confounded a set of teachers finds a config's training sources: each source's faces by their
class and the teachers' answer for the task they lack, as cross-labelling counts them.

Group-robust training (`options.robust`) balances the groups those answers name. Teachers that
call nearly every gender face happy leave it next to no sad-looking women to balance, whatever
the method; this says so before hours of training do. Cross-labels into a temporary folder:

    python experiments/teacher_confound.py --teachers runs/generalisation/separate/seed-0 \\
        --config experiments/configs/generalisation.json --variant multitask_utk_balanced
    python experiments/teacher_confound.py --teachers mtl/reference_labeller \\
        --config experiments/configs/generalisation.json --variant multitask_utk_balanced

TEACHERS is a run directory (or `mtl/reference_labeller`); CONFIG an experiment config or, with
--variant, a comparison config. Its data section and seed say which faces (the training split).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from mtl import pseudo_labels
from mtl.compare import variant_configs
from mtl.config import load_config
from mtl.data.pipeline import ExperimentData
from mtl.errors import UserError


def training_config(path: Path, variant: str | None):
    """The experiment config of `path`, or of its `variant` when `path` is a comparison config."""
    if variant is None:
        return load_config(path)
    configs = variant_configs(json.loads(path.read_text()))
    if variant not in configs:
        raise UserError(f"Comparison config '{path}' has no variant '{variant}' that trains; it has: {', '.join(configs)}.")
    return configs[variant]


def teacher_confound(teachers: Path, config) -> dict:
    """The `confound` of cross-labelling `config`'s training split with `teachers`."""
    teacher = pseudo_labels.load_teacher(teachers)
    data = ExperimentData.load(config.data, config.train.seed)
    with tempfile.TemporaryDirectory() as folder:
        return pseudo_labels.cross_label(teacher, data, Path(folder) / pseudo_labels.MERGED_DIR)["confound"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=Path, required=True, help="a run directory holding model.keras")
    parser.add_argument("--config", type=Path, required=True, help="an experiment config, or a comparison config with --variant")
    parser.add_argument("--variant", help="the comparison variant whose training data to label")
    parser.add_argument("--out", type=Path, help="also write the counts to this JSON file")
    args = parser.parse_args(argv)
    try:
        if not args.config.is_file():
            raise UserError(f"Config file '{args.config}' does not exist.")
        confound = teacher_confound(args.teachers, training_config(args.config, args.variant))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(pseudo_labels.confound_lines(confound)))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"teachers": str(args.teachers), "confound": confound}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
