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


def _conv_bn_relu(x, channels: int, stride: int = 1, conv=layers.Conv2D):
    x = conv(channels, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def _residual_block(x, channels: int, stride: int, conv):
    """Two 3x3 `conv` layers with batch normalisation and a shortcut (projected when the shape changes)."""
    shortcut = x
    y = _conv_bn_relu(x, channels, stride, conv)
    y = conv(channels, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if stride != 1 or shortcut.shape[-1] != channels:
        shortcut = layers.Conv2D(channels, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def _residual_network(images, config: ModelConfig, conv):
    """Stem at half resolution, then three stages (width, 2*width, 4*width channels) of `depth`
    residual blocks, halving the resolution between stages; global average pooling."""
    x = layers.Rescaling(1.0 / 255)(images)
    x = _conv_bn_relu(x, config.width, stride=2)
    for stage in range(3):
        for block in range(config.depth):
            stride = 2 if (block == 0 and stage > 0) else 1
            x = _residual_block(x, config.width * 2**stage, stride, conv)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(config.dropout)(x)


def resnet(images, config: ModelConfig):
    """A small ResNet sized for a 2-core CPU: about 4x LeNet's compute, a third of its parameters.

    With width 32 and depth 1 it is a ResNet-8. Plain convolutions, not depthwise-separable ones:
    on this CPU TensorFlow runs them several times faster for the same multiply-adds.
    """
    return _residual_network(images, config, layers.Conv2D)


def dsresnet(images, config: ModelConfig):
    """The same network with depthwise-separable convolutions in its blocks: far fewer
    parameters and multiply-adds, but slower per multiply-add on this CPU."""
    return _residual_network(images, config, layers.SeparableConv2D)


BACKBONES = {"lenet": lenet, "resnet": resnet, "dsresnet": dsresnet}


def names() -> list[str]:
    """The backbones a config may name (`model.backbone`)."""
    return list(BACKBONES)


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
