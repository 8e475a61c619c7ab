"""mtl: recognise gender and emotion (happy/sad) of a face, separately, cross-labelled or multi-task.

`mtl.load(run_dir=None)` returns a predictor (the bundled model, or a run's) whose
`predict(images)` finds and classifies the faces; see `mtl.predict`. Importing `mtl` loads no
TensorFlow: that happens in `load`, so the command line's `--help` answers at once.
"""

__version__ = "0.1.0"


def load(run_dir=None):
    """A `mtl.predict.Predictor` for the run directory `run_dir`, or for the bundled model when None."""
    from mtl.quiet import start_tensorflow

    start_tensorflow()
    from mtl.predict import load as load_predictor

    return load_predictor(run_dir)
