"""A network's multiply-adds per face, counted from its layers' kernels and output shapes.

Every kernel (a convolution's, a depthwise or separable convolution's, a dense layer's) is
applied once at every output position, so a layer costs the product of its kernel's shape
times the positions of its output: exact for those layers, and what TensorFlow's profiler
counts as float operations halved. Normalisation, activations and pooling are left out; they
are a few percent of a convolutional network's work.
"""

import math

import keras


def leaf_layers(model: keras.Model):
    """Every layer inside `model`, descending into nested models (a backbone inside a network)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def forward_multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one face through `model` (batch size 1)."""
    total = 0
    for layer in leaf_layers(model):
        kernels = [weight for weight in layer.weights if "kernel" in weight.path.split("/")[-1] and len(weight.shape) >= 2]
        if not kernels:
            continue
        positions = math.prod(layer.output.shape[1:-1])  # spatial positions (1 for a dense layer on vectors)
        total += positions * sum(math.prod(kernel.shape) for kernel in kernels)
    return total
