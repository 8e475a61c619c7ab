"""Backbones: functions from an image tensor (float, 0..255) to a feature vector.

Each takes the Keras input tensor and the ModelConfig and returns the feature tensor;
`BACKBONES` names them, so every approach can use any backbone.
"""

import keras
from keras import layers

from mtl.config import ModelConfig


def lenet(images, config: ModelConfig):
    """The notebook's LeNet-5-style CNN, up to (and including) its last dropout."""
    x = layers.Rescaling(1.0 / 255)(images)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(32, 3, padding="valid", activation="relu")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation="relu")(x)
    x = layers.Dropout(config.dropout)(x)
    x = layers.Dense(84, activation="relu")(x)
    return layers.Dropout(config.dropout)(x)


def _conv_bn_relu(x, channels: int, stride: int = 1):
    x = layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _residual_block(x, channels: int, stride: int):
    """Two 3x3 convolutions with batch normalisation and a shortcut (projected when the shape changes)."""
    shortcut = x
    y = _conv_bn_relu(x, channels, stride)
    y = layers.Conv2D(channels, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != channels:
        shortcut = layers.Conv2D(channels, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def resnet(images, config: ModelConfig):
    """A small ResNet sized for a 2-core CPU: about 4x LeNet's compute, a third of its parameters.

    Stem at half resolution, then three stages (width, 2*width, 4*width channels) of `depth`
    residual blocks, halving the resolution between stages; global average pooling. With
    width 32 and depth 1 it is a ResNet-8. Plain convolutions, not depthwise-separable ones:
    on this CPU TensorFlow runs them several times faster for the same multiply-adds.
    """
    x = layers.Rescaling(1.0 / 255)(images)
    x = _conv_bn_relu(x, config.width, stride=2)
    for stage in range(3):
        for block in range(config.depth):
            stride = 2 if (block == 0 and stage > 0) else 1
            x = _residual_block(x, config.width * 2**stage, stride)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(config.dropout)(x)


def _separable_block(x, channels: int, stride: int):
    """A residual block of two depthwise-separable convolutions with batch normalisation."""
    shortcut = x
    y = layers.SeparableConv2D(channels, 3, strides=stride, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = layers.SeparableConv2D(channels, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != channels:
        shortcut = layers.Conv2D(channels, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def dsresnet(images, config: ModelConfig):
    """A small residual network of depthwise-separable convolutions, sized for a 2-core CPU.

    Stem at half resolution, then three stages (width, 2*width, 4*width channels) of
    `depth` blocks each, halving the resolution at each stage; global average pooling.
    """
    x = layers.Rescaling(1.0 / 255)(images)
    x = layers.Conv2D(config.width, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for stage in range(3):
        channels = config.width * 2**stage
        for block in range(config.depth):
            stride = 2 if (block == 0 and stage > 0) else 1
            x = _separable_block(x, channels, stride)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(config.dropout)(x)


BACKBONES = {"lenet": lenet, "resnet": resnet, "dsresnet": dsresnet}


def count_multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one forward pass over the convolution and dense layers (batch of one)."""
    total = 0
    for layer in _all_layers(model):
        if isinstance(layer, layers.SeparableConv2D):
            h, w, c_out = layer.output.shape[1:]
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += h * w * (kh * kw * c_in + c_in * c_out)
        elif isinstance(layer, layers.Conv2D):
            h, w, c_out = layer.output.shape[1:]
            c_in = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * c_in * c_out
        elif isinstance(layer, layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer
