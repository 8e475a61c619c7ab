"""PCGrad (Yu et al. 2020, "Gradient surgery for multi-task learning").

Each head's gradient of the shared variables loses its component along any other head's
gradient that it conflicts with (negative dot product), the others taken in random order;
the projected gradients are summed. Each head's own layer still gets its own gradient.
"""

import keras
import tensorflow as tf
from keras import ops

from mtl.config import PluginOptions
from mtl.weighting.base import Weighting, register


@register("pcgrad")
class PCGrad(Weighting):
    """Sums the heads' gradients of the shared variables after projecting their conflicts away."""

    needs_gradients = True

    def __init__(self, options: PluginOptions, heads, **kwargs):
        super().__init__(options, heads, **kwargs)
        self.seed_generator = keras.random.SeedGenerator()

    def combine_gradients(self, losses: dict, present: dict, task_gradients: dict) -> list:
        heads = list(task_gradients)
        # Shapes and sizes as tensors: a gradient's static shape can be unknown when the step is traced.
        shapes = [tf.shape(gradient) for gradient in task_gradients[heads[0]]]
        sizes = [tf.size(gradient) for gradient in task_gradients[heads[0]]]
        flat = ops.stack([ops.concatenate([ops.reshape(g, (-1,)) for g in task_gradients[head]]) for head in heads])
        projected = []
        for i in range(len(heads)):
            gradient = flat[i]
            # A random order in the graph itself, so it changes at every step, not once per trace.
            for j in ops.unstack(keras.random.shuffle(ops.arange(len(heads)), seed=self.seed_generator)):
                other = ops.take(flat, j, axis=0)
                conflict = ops.minimum(ops.sum(gradient * other), 0.0) * ops.cast(j != i, gradient.dtype)
                gradient = gradient - conflict / ops.maximum(ops.sum(other * other), 1e-12) * other
            projected.append(gradient)
        total = ops.sum(ops.stack(projected), axis=0)
        pieces = tf.split(total, tf.stack(sizes))
        return [tf.reshape(piece, shape) for piece, shape in zip(pieces, shapes)]
