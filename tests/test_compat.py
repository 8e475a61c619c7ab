"""Every private internal mtl uses (mtl/compat.py) still exists and still does its job in the installed
TensorFlow, Keras and Keras Tuner: an upgrade that moves one fails here, by name."""

import keras
import numpy as np
import tensorflow as tf

from mtl import compat


def test_the_custom_gradients_a_trace_registers_are_found_and_forgotten():
    assert compat.custom_gradient_registry() is not None, "TensorFlow's gradient registry moved (ops._gradient_registry)"

    @tf.custom_gradient
    def doubled(x):
        return 2 * x, lambda upstream: 2 * upstream

    tf.function(lambda x: doubled(x)).get_concrete_function(tf.TensorSpec([], tf.float32))
    registered = lambda: [name for name in compat.custom_gradient_registry() if name.startswith(compat.GRADIENT_PREFIX)]
    assert registered(), "tracing a tf.custom_gradient no longer registers 'CustomGradient-…' entries"

    compat.forget_custom_gradients()

    assert registered() == []


def test_the_tuner_worker_timeout_is_a_module_constant_it_reads():
    from keras_tuner.src.distribute import oracle_client

    before = oracle_client.TIMEOUT
    try:
        compat.set_tuner_worker_timeout(123)
        assert oracle_client.TIMEOUT == 123
    finally:
        oracle_client.TIMEOUT = before


def test_fit_builds_a_model_through_maybe_symbolic_build_which_built_before_fit_leaves_out():
    assert callable(getattr(keras.Model, "_maybe_symbolic_build", None)), "keras.Model lost _maybe_symbolic_build"
    calls = []

    class Counted(compat.BuiltBeforeFit, keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            calls.append(iterator is not None or data_batch is not None)
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    model = Counted()
    model(np.ones((1, 4), np.float32))
    model.compile(optimizer="sgd", loss="mse")
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():  # where Keras would build on a first batch
        strategy_model = Counted()
        strategy_model(np.ones((1, 4), np.float32))
        strategy_model.compile(optimizer="sgd", loss="mse")
    for fitted in (model, strategy_model):
        history = fitted.fit(np.ones((8, 4), np.float32), np.zeros((8, 2), np.float32), batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
    assert calls == [True, True], "fit no longer asks the model to build itself through _maybe_symbolic_build"


def test_the_random_generator_states_of_a_models_layers_are_listed_and_move_with_a_draw():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dropout(0.5, seed=1)(keras.layers.Dense(4)(inputs)))
    [state] = compat.random_generator_states(model)
    before = np.array(state.numpy())
    model(np.ones((2, 4), np.float32), training=True)
    assert not np.array_equal(before, state.numpy())


def test_the_tflite_schema_reads_and_writes_a_model_with_metadata():
    schema, flatbuffer_utils = compat.tflite_schema()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(lambda x: x + 1).get_concrete_function(tf.TensorSpec([1], tf.float32))])
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(converter.convert()))
    entry, buffer = schema.MetadataT(), schema.BufferT()
    buffer.data = np.frombuffer(b"{}", dtype=np.uint8)
    entry.name, entry.buffer = b"test", len(model.buffers)
    model.buffers.append(buffer)
    model.metadata = [*(model.metadata or []), entry]
    again = flatbuffer_utils.convert_bytearray_to_object(flatbuffer_utils.convert_object_to_bytearray(model))
    assert [bytes(again.buffers[e.buffer].data) for e in again.metadata if e.name == b"test"] == [b"{}"]
