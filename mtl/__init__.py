"""mtl: recognise gender and emotion (happy/sad) of a face, separately, cross-labelled or multi-task.

`mtl.load(run_dir=None)` returns a predictor (the bundled model, or a run's) whose
`predict(images)` finds and classifies the faces; see `mtl.predict`. Importing `mtl` loads no
TensorFlow, so the command line's `--help` answers at once; `load` loads it only for a model that
answers through Keras (the bundled model answers through LiteRT).
"""

__version__ = "0.1.0"


def load(run_dir=None, runtime: str = "auto"):
    """A `mtl.predict.Predictor` for the run directory `run_dir`, or for the bundled model when None.

    `runtime`: "auto" (LiteRT where the model's TFLite export lies beside it, as the bundled model's
    does, else Keras), "litert" or "keras". Only Keras loads TensorFlow.
    """
    from mtl.predict import load as load_predictor

    return load_predictor(run_dir, runtime)
