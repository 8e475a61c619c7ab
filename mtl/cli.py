"""The `mtl` command: train, evaluate, refit, predict, compare, tune, prepare, export.

User mistakes end in one sentence on stderr and exit status 2, never a traceback. Every subcommand
takes `--plugin MODULE` (and reads `MTL_PLUGINS`), imported before any config is checked.
"""

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

from mtl import plugins
from mtl import __version__
from mtl.budget import HEADLINE as BUDGET_HEADLINE
from mtl.builtin_names import APPROACHES, BACKBONES, DEFAULT_DETECTOR, DETECTORS, RUNTIMES
from mtl.errors import DiskFull, UserError
from mtl.quiet import start_tensorflow
from mtl.tuning.options import DEFAULT_MAX_TRIALS, OBJECTIVES, TUNERS

EXIT_USER_ERROR = 2
DESCRIPTION = (
    "mtl recognises the gender (female/male) and the emotion (happy/sad) of every face in a photo, "
    "with a bundled model or one you train: separately, cross-labelled or multi-task. "
    "Start with: mtl predict PHOTO"
)
BUNDLED_METRICS_FILE = "bundled_model_metrics.json"  # in the current folder: `mtl evaluate` without a run
# In metrics.json, made by training (or a refit), not by evaluation.
TRAINING_RESULTS = ("training_seconds", "refit_seconds", "budget", *BUDGET_HEADLINE, "training_multiply_adds_with_teachers")

# Approaches are plug-ins registered where TensorFlow is imported, so the parser takes any name
# and the config refuses an unknown one: `mtl --help` never loads TensorFlow, and lists the
# package's own names from mtl.builtin_names, which a test keeps equal to the registries.
APPROACH_HELP = f"approach name: {', '.join(APPROACHES)} or a registered plug-in"


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(args) -> dict:
    from mtl.config import set_dotted

    overrides: dict = {}
    for item in getattr(args, "set", None) or []:
        key, separator, value = item.partition("=")
        if not separator:
            raise UserError(f"--set expects KEY=VALUE (for example train.epochs=5), got '{item}'.")
        set_dotted(overrides, key, _parse_value(value))
    if getattr(args, "data_dir", None):
        set_dotted(overrides, "data.data_dir", args.data_dir)  # as given: configs stay free of this machine's paths
    if getattr(args, "joint_dir", None):
        set_dotted(overrides, "data.joint_test", args.joint_dir)
    if getattr(args, "epochs", None) is not None:
        set_dotted(overrides, "train.epochs", args.epochs)
    if getattr(args, "backbone", None):
        # The type only: a config's options for the same backbone are kept, another one starts from its defaults.
        set_dotted(overrides, "model.backbone.type", args.backbone)
    if getattr(args, "strategy", None):
        set_dotted(overrides, "train.strategy", args.strategy)
    if getattr(args, "budget", None):
        set_dotted(overrides, "train.budget.kind", args.budget)
    return overrides


def _experiment_config(args, approach: str | None):
    from mtl.config import ExperimentConfig, load_config, merge

    config = load_config(args.config) if args.config else ExperimentConfig()
    if approach:
        config = merge(config, {"approach": approach})
    return merge(config, _overrides(args))


def _print_headline(metrics: dict) -> None:
    for key, value in metrics["headline"].items():
        if value is not None:
            print(f"  {key}: {value:.4f}")


def cmd_train(args) -> None:
    from mtl.distribute import runs_dir_of_this_process
    from mtl.experiment import train_and_evaluate
    from mtl.runs import default_run_name, run_directory

    config = _experiment_config(args, args.approach)
    with runs_dir_of_this_process(args.runs_dir, config.train) as runs_dir:
        run_dir = run_directory(runs_dir, args.name or default_run_name(config))
        evaluation = train_and_evaluate(config, run_dir, evaluate=not args.no_evaluate)
        print(f"Run written to {run_dir}")
        if evaluation is not None:
            _print_headline(evaluation.metrics)


def _training_results(metrics_file: Path) -> dict:
    """What `mtl train` wrote into a metrics file that evaluation does not make, for `evaluate --overwrite` to keep."""
    from mtl.config import read_json

    written = read_json(metrics_file, "Metrics file") if metrics_file.is_file() else {}
    headline = written.get("headline") or {}
    return {
        "metrics": {key: written[key] for key in TRAINING_RESULTS if key in written},
        "headline": {key: value for key, value in headline.items() if key.startswith("validation_")},
    }


def cmd_evaluate(args) -> None:
    from mtl.config import load_config, merge
    from mtl.evaluate import evaluate_run, write_metrics
    from mtl.runs import (CONFIG_FILE, METRICS_FILE, check_output_path, evaluation_dir, replaced_folder, require_run,
                          run_lock)

    if args.run_dir:
        run_dir = require_run(Path(args.run_dir))
        output = Path(args.output) if args.output else run_dir / METRICS_FILE
        plugins.load_for_run(run_dir)
        config = load_config(run_dir / CONFIG_FILE)
    else:  # the bundled model, scored on the bundled sample unless --data-dir; the package is not written to
        from mtl.predict import bundled_model_path, which_model

        run_dir = require_run(bundled_model_path().parent)
        output = Path(args.output or BUNDLED_METRICS_FILE)
        config = merge(load_config(run_dir / CONFIG_FILE), {"data": {"data_dir": None}})
    check_output_path(output)
    if output.is_dir():
        raise UserError(f"--output '{output}' is a folder; expected the metrics file (JSON) to write.")
    if output.exists() and not args.overwrite:
        raise UserError(f"'{output}' already exists; pass --output for another file or --overwrite to replace it.")
    config = merge(config, _overrides(args))
    if not args.run_dir:  # as `mtl predict` says which model answers; after the refusals above, which stay one sentence
        print(which_model(run_dir, bundled=True, doing="Scoring"), file=sys.stderr, flush=True)
    # Writing into a run (its metrics.json) waits for no one: a run that another process holds is refused.
    writes_run = args.run_dir and output.resolve().parent == run_dir.resolve()
    with run_lock(run_dir) if writes_run else contextlib.nullcontext():
        training = _training_results(output)  # read before anything is replaced
        with replaced_folder(evaluation_dir(output)) as artifacts_dir:  # no figure of an earlier evaluation survives
            metrics = evaluate_run(run_dir, config.data, artifacts_dir=artifacts_dir, detect=args.detect).metrics
            metrics.update(training["metrics"])
            metrics["headline"].update(training["headline"])
            write_metrics(metrics, output)
    print(f"Metrics written to {output}")
    _print_headline(metrics)


def cmd_refit(args) -> None:
    from mtl.config import load_config, merge
    from mtl.refit import refit_run
    from mtl.runs import CONFIG_FILE, require_run, run_directory

    if args.run_dir:
        run_dir = require_run(Path(args.run_dir))
        plugins.load_for_run(run_dir)
    else:  # the bundled model, refitted on the data it trained on (its config's data_dir) unless --data-dir
        from mtl.predict import bundled_model_path

        run_dir = require_run(bundled_model_path().parent)
    config = merge(load_config(run_dir / CONFIG_FILE), _overrides(args))
    output_dir = run_directory(args.runs_dir, args.name or f"{run_dir.resolve().name}-refit")
    heads = [head for head in args.heads.split(",") if head]
    evaluation = refit_run(run_dir, output_dir, config, heads, args.attributes or [], teachers=args.teachers)
    print(f"Run written to {output_dir}")
    _print_headline(evaluation.metrics)


def cmd_predict(args) -> None:
    from mtl.predict import predict_command

    detector = None if args.no_detect else args.detector
    predict_command(args.paths, as_json=args.json, annotate_dir=args.annotate, detector=detector,
                    runtime=args.runtime)


def cmd_export(args) -> None:
    from mtl.export import export_command

    if args.run_dir:
        plugins.load_for_run(Path(args.run_dir))
    export_command(args.run_dir, args.format, Path(args.output))


def cmd_prepare(args) -> None:
    from mtl.data.pipeline import data_root
    from mtl.data.prepared import prepare, report

    config = _experiment_config(args, None)
    folder = args.folder or config.data.prepared
    if not folder:
        raise UserError("mtl prepare needs a folder to prepare the datasets into: name it, or set data.prepared.")
    for name, builder in prepare(config.data, data_root(config.data), Path(folder), config.train.seed).items():
        print(report(name, builder))


def cmd_compare(args) -> None:
    _compare(args, args.variants.split(",") if args.variants else None)


def cmd_notebook(args) -> None:
    """The notebook's method end to end: the separate models, cross-labelling, the four-class model."""
    _compare(args, ["separate", "crosslabel_hard"])


def _compare(args, only: list[str] | None) -> None:
    from mtl.compare import compare
    from mtl.config import config_from_dict, deep_merge, read_json
    from mtl.distribute import runs_dir_of_this_process
    from mtl.runs import run_directory

    spec = {}
    if args.config:
        spec = read_json(args.config, "Comparison config")
        if "base" not in spec and "variants" not in spec:
            spec = {"base": spec}  # a plain experiment config, e.g. the best one from `mtl tune`
    spec["base"] = deep_merge(spec.get("base", {}), _overrides(args))
    with runs_dir_of_this_process(args.runs_dir, config_from_dict(spec["base"]).train) as runs_dir:
        root = run_directory(runs_dir, args.name or time.strftime("compare-%Y%m%d-%H%M%S"))
        compare(spec, root, only, getattr(args, "seeds", None))
        print()
        print((root / "results.md").read_text())
        print(f"TensorBoard: tensorboard --logdir {root}")


def cmd_tune(args) -> None:
    from mtl.config import config_from_dict, merge
    from mtl.tuning.options import TuneRequest
    from mtl.tuning.search import read_search_file, run_tuning  # TensorFlow and Keras Tuner: only once a search runs

    base, search = read_search_file(args.config)  # a plain config, or {"base": config, "search": settings}
    config = merge(merge(config_from_dict(base), {"approach": args.approach}), _overrides(args))
    if config.train.strategy != "none":
        raise UserError(
            f"mtl tune trains each trial on one device, not with train.strategy '{config.train.strategy}'; "
            "spread a search over machines with --chief and --worker."
        )
    run_tuning(TuneRequest.from_arguments(args), config, search)


def _add_data_options(parser, experiment=True) -> None:
    parser.add_argument("--data-dir", help="folder holding the datasets (default: the bundled sample)")
    parser.add_argument("--joint-dir", help="a jointly labelled folder {happy_female,happy_male,sad_female,sad_male}/")
    if experiment:
        parser.add_argument("--config", help="JSON config file (any subset of the fields)")
        parser.add_argument("--epochs", type=int, help="training epochs (overrides the config)")
        parser.add_argument("--backbone", help=f"backbone name (model.backbone): {', '.join(BACKBONES)} or a plug-in's")
        parser.add_argument("--runs-dir", default="runs", help="where run directories are created (default: runs)")
        parser.add_argument("--name", help="name of the new run directory (default: time, approach, backbone)")
        parser.add_argument(
            "--strategy",
            help="none (one device), mirrored (every local GPU or logical CPU) or multiworker (the machines TF_CONFIG lists)",
        )
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. data.color=gray")


def _add_budget_option(parser) -> None:
    parser.add_argument(
        "--budget",
        help="what is held equal (train.budget.kind): epochs (default), examples (faces seen per task), steps, "
        "flops (training multiply-adds) or seconds",
    )


def _add_tune_options(parser) -> None:
    """The options of `mtl tune` beyond the experiment's (--config, --set, --data-dir, ...)."""
    parser.add_argument("--tuner", choices=TUNERS, help="search algorithm (default: hyperband)")
    parser.add_argument("--objective", choices=OBJECTIVES, help="validation metric to maximise (default: val_mean_accuracy)")
    parser.add_argument("--max-epochs", type=int, help="epochs of a trial; Hyperband's longest (default: train.epochs)")
    parser.add_argument("--max-trials", type=int, help=f"trials of a random or bayesian search (default: {DEFAULT_MAX_TRIALS})")
    parser.add_argument(
        "--hp",
        action="append",
        metavar="NAME=SPEC",
        help='set one hyperparameter\'s range: backbone=lenet, batch_size=[64,128], dropout={"min":0,"max":0.3}',
    )
    parser.add_argument("--directory", help="search directory (default: RUNS_DIR/tune-APPROACH); run again to resume")
    parser.add_argument("--overwrite", action="store_true", help="start afresh where a search with other settings is")
    role = parser.add_mutually_exclusive_group()
    role.add_argument("--chief", action="store_true", help="distributed search: serve the trials to the workers")
    role.add_argument("--worker", metavar="ID", help="distributed search: run trials for the chief as worker ID")
    parser.add_argument("--oracle-ip", help="address of the chief (default: 127.0.0.1)")
    parser.add_argument("--oracle-port", type=int, help="port of the chief (default: 8000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtl", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"mtl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one approach, then evaluate it")
    train.add_argument("approach", help=APPROACH_HELP)
    train.add_argument("--no-evaluate", action="store_true", help="skip the test-set evaluation")
    _add_data_options(train)
    _add_budget_option(train)
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a run on the held-out test sets")
    evaluate.add_argument("run_dir", nargs="?", help="run directory (default: the bundled model)")
    evaluate.add_argument(
        "--output", help=f"metrics file to write (default: RUN_DIR/metrics.json, or {BUNDLED_METRICS_FILE} for the bundled model)"
    )
    evaluate.add_argument("--overwrite", action="store_true", help="replace an existing metrics file")
    evaluate.add_argument("--detect", action="store_true",
                          help="also score the joint folder on detected faces (Happy House always is)")
    _add_data_options(evaluate, experiment=False)
    evaluate.set_defaults(handler=cmd_evaluate)

    refit = commands.add_parser(
        "refit", help="refit a run's heads on its validation faces, every group (class x other task x source) weighing the same"
    )
    refit.add_argument("run_dir", nargs="?", help="run directory (default: the bundled model)")
    refit.add_argument("--heads", default="gender,emotion", help="which heads to refit (default: gender,emotion)")
    refit.add_argument("--attributes", action="append", metavar="NAME",
                       help="also group by this attribute of a source, e.g. age_band (repeatable)")
    refit.add_argument("--teachers", metavar="RUN",
                       help="a run (or mtl/reference_labeller) whose answers for the other task group the faces "
                            "(default: the run's own model)")
    refit.add_argument("--runs-dir", default="runs", help="where the new run directory is created (default: runs)")
    refit.add_argument("--name", help="name of the new run directory (default: RUN-refit)")
    refit.add_argument("--data-dir", help="folder holding the datasets the run trained on (default: its config's)")
    refit.set_defaults(handler=cmd_refit)

    predict = commands.add_parser(
        "predict", help="gender, emotion and four-class labels of every face in photos",
        usage="mtl predict [-h] [RUN_DIR] PATH [PATH ...] [--json] [--annotate OUT_DIR] [--no-detect] [--detector NAME] [--runtime NAME]",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH",
                         help="images or folders (recursive); a run directory first, else the bundled model")
    predict.add_argument("--json", action="store_true", help="one JSON object per face (JSON lines)")
    predict.add_argument("--annotate", metavar="OUT_DIR", help="write each image with its faces boxed and labelled")
    predict.add_argument("--no-detect", action="store_true", help="take every image as one face crop")
    predict.add_argument("--detector", default=DEFAULT_DETECTOR,
                         help=f"face detector: {', '.join(DETECTORS)} or a plug-in's (default: {DEFAULT_DETECTOR})")
    predict.add_argument("--runtime", default="auto", choices=RUNTIMES,
                         help="auto (default): LiteRT where the model's TFLite export lies beside it, as the "
                              "bundled model's does (no TensorFlow: starts in about a second), else Keras")
    # TensorFlow is started by the predictor only when Keras answers.
    predict.set_defaults(handler=cmd_predict, needs_tensorflow=False)

    export = commands.add_parser("export", help="a serving model taking uint8 face crops of any size")
    export.add_argument("run_dir", nargs="?", help="run directory (default: the bundled model)")
    export.add_argument("--format", choices=("savedmodel", "tflite"), default="savedmodel")
    export.add_argument("--output", required=True, help="folder (savedmodel) or .tflite file to write")
    export.set_defaults(handler=cmd_export)

    prepare = commands.add_parser(
        "prepare", help="decode, check and resize the training folders once into TFDS record files (data.prepared)"
    )
    prepare.add_argument("folder", nargs="?", help="where the prepared datasets go (default: the config's data.prepared)")
    prepare.add_argument("--config", help="JSON config file: image size, validation share, train.seed of the split")
    _add_data_options(prepare, experiment=False)
    prepare.set_defaults(handler=cmd_prepare)

    compare = commands.add_parser("compare", help="train and evaluate every approach side by side (TensorBoard, results.md)")
    compare.add_argument("--variants", help="comma-separated subset of the variants to run")
    compare.add_argument("--seeds", type=int, help="train every variant with this many seeds (default: the config's, else 1)")
    _add_data_options(compare)
    _add_budget_option(compare)
    compare.set_defaults(handler=cmd_compare)

    # Always the same two variants: choosing others is what `compare --variants` is for.
    notebook = commands.add_parser(
        "notebook", help="the notebook's method end to end: separate models, cross-labelling, four-class model"
    )
    _add_data_options(notebook)
    notebook.set_defaults(handler=cmd_notebook)

    tune = commands.add_parser("tune", help="hyperparameter search with Keras Tuner")
    tune.add_argument("approach", help=APPROACH_HELP)
    _add_data_options(tune)
    _add_tune_options(tune)
    tune.set_defaults(handler=cmd_tune)

    for command in commands.choices.values():
        command.add_argument(
            "--plugin", action="append", metavar="MODULE",
            help=f"import this module first, registering its plug-ins (repeatable; also ${plugins.ENVIRONMENT_VARIABLE})",
        )
    parser.command_names = list(commands.choices)  # for unknown_command: argparse's "invalid choice" suggests none
    return parser


def unknown_command(argv: list[str], command_names: list[str]) -> str | None:
    """The sentence refusing a misspelt command, with the likeliest one meant; None when the command is known.

    The top-level options (--help, --version) take no value, so a first argument that is not an option is the command.
    """
    from mtl.registry import did_you_mean

    if not argv or argv[0].startswith("-") or argv[0] in command_names:
        return None
    return (f"'{argv[0]}' is not an mtl command; expected one of: {', '.join(command_names)}"
            f"{did_you_mean(argv[0], command_names)}")


def check_names_early(args, plugin_modules: list[str]) -> None:
    """Refuse a misspelt approach or backbone before TensorFlow starts, where no plug-in could add the name:
    the config's own sentence, with the likeliest name meant."""
    from mtl.registry import did_you_mean

    if plugin_modules:
        return  # a plug-in may register the name: the registries, loaded with TensorFlow, decide
    for field, value, names in (
        ("approach", getattr(args, "approach", None), APPROACHES),
        ("model.backbone", getattr(args, "backbone", None), BACKBONES),
    ):
        if value is not None and value not in names:
            raise UserError(f"Config field '{field}' must be one of: {', '.join(names)}, got {value!r}"
                            f"{did_you_mean(value, names)}")


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Keras says this whenever a dataset of unknown length (ours skip unreadable images) ends,
    # which is how every validation pass ends: not a problem, so not shown.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    parser = build_parser()
    refusal = unknown_command(sys.argv[1:] if argv is None else list(argv), parser.command_names)
    if refusal:
        print(f"mtl: error: {refusal}", file=sys.stderr)
        return EXIT_USER_ERROR
    args = parser.parse_args(argv)
    try:
        plugin_modules = plugins.requested(args.plugin)
        check_names_early(args, plugin_modules)
        if getattr(args, "needs_tensorflow", True):
            start_tensorflow()  # started here, its start-up noise is left out
        plugins.load(plugin_modules)
        args.handler(args)
    except UserError as error:
        print(f"mtl: error: {error}", file=sys.stderr)
        if isinstance(error, DiskFull):
            leave_at_once(EXIT_USER_ERROR)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("mtl: interrupted; finished runs and files are kept.", file=sys.stderr)
        return 130
    except PermissionError as error:  # met while working, where no check before the work foresaw it
        print(f"mtl: error: '{error.filename or os.getcwd()}' is not open to this user (permission denied); "
              "change its permissions or choose another path.", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as error:
        from mtl.runs import disk_full, no_space

        if not disk_full(error):
            raise
        # A write that no narrower handler saw (TensorFlow's file cache, its logs): the error's own path
        # where it has one, else where the command writes.
        where = getattr(error, "filename", None) or getattr(args, "runs_dir", None) or os.getcwd()
        print(f"mtl: error: {no_space(where)}", file=sys.stderr)
        leave_at_once(EXIT_USER_ERROR)
    return 0


def leave_at_once(status: int) -> None:
    """End the process with `status` without the interpreter's teardown, which a full disk crashes (see DiskFull)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
