"""Every use of a private TensorFlow, Keras or Keras Tuner internal, in one place.

Each function or class here reaches past a library's public API because that API has no way to
do the job; each says why. tests/test_compat.py checks every one against the installed versions,
so an upgrade that moves an internal fails there, by name, instead of somewhere in a training run.
"""

GRADIENT_PREFIX = "CustomGradient-"


def custom_gradient_registry() -> dict | None:
    """TensorFlow's process-wide registry of gradient functions (None where an upgrade moved it)."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def forget_custom_gradients() -> None:
    """Drop the gradient functions TensorFlow registered while tracing (tf.custom_gradient).

    Each `tf.custom_gradient` inside a traced function (Keras's all-reduce of the gradients is one)
    registers its gradient under a new name in a registry that is never emptied, and each entry
    keeps the whole traced graph alive: tens of MB per search trial, which Keras's `clear_session`
    does not free. Only tracing looks them up, and a finished trial is never traced again.
    """
    registry = custom_gradient_registry()
    if registry is not None:
        for name in [name for name in registry if name.startswith(GRADIENT_PREFIX)]:
            del registry[name]


def set_tuner_worker_timeout(seconds: float) -> None:
    """How long a Keras Tuner worker waits for the chief's answer (its module constant; no option exists)."""
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = seconds


class BuiltBeforeFit:
    """Mixin for a `keras.Model` built before `fit` starts: Keras's private build on a first batch is left out.

    Under a strategy Keras's `fit` (and `evaluate`) first builds the model on a first batch averaged
    over the replicas, which fails across machines (keras-team/keras#20585), and then restarts the
    batches, so that training would see them in another order than on one device. Keras has no
    option to leave that out; overriding its private `_maybe_symbolic_build` does, and costs
    nothing for a model built already, since `fit` builds the optimizer itself. Put it before
    `keras.Model` among the bases.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        pass


def random_generator_states(model) -> list:
    """The state variables of every random-number generator in `model`'s layers (dropout's, augmentation's).

    Keras saves neither them nor a public list of them; `mtl.training.RandomStates` checkpoints
    them so that a resumed fit draws the masks an uninterrupted one would.
    """
    return [generator.state for layer in model._flatten_layers() for generator in getattr(layer, "_seed_generators", [])]


def tflite_schema():
    """(the TFLite flatbuffer schema's object API, its read/write helpers): TensorFlow ships them only inside
    `tensorflow.lite`, and tf.lite has no public way to name tensors or add metadata (`mtl.export`)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    return schema, flatbuffer_utils
