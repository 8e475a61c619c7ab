"""Backbones: functions from an image tensor (float, 0..255) to a feature vector, registered by name.

Each takes the Keras input tensor and the ModelConfig and returns the feature tensor. `@register`
makes one selectable as `model.backbone` (timm's `@register_model`), with what it declares about
itself: its own options (a `PluginOptions` subclass: `{"type": "resnet", "width": 32, "depth": 1}`
in a config), the smallest image it can see and the values a search tries for its options. Every
approach can use any backbone.
"""

from dataclasses import dataclass, field
from typing import Callable

from keras import layers

from mtl.config import DataConfig, ModelConfig, PluginOptions, number
from mtl.errors import UserError
from mtl.registry import Registry


@dataclass(frozen=True)
class Backbone:
    """A registered backbone: called like its build function, and named like it in the registry's messages."""

    build: Callable  # (image tensor, ModelConfig) -> feature tensor
    min_image_size: int = 1  # data.image_size below this leaves the network nothing to see
    # Its own options, read from `config.backbone` (a config's `model.backbone`).
    Options: type = PluginOptions
    # Its options a search varies, each with the values it tries by default.
    search_defaults: dict[str, list] = field(default_factory=dict)
    searched: bool = True  # among the default search's backbone choices

    def __post_init__(self):
        object.__setattr__(self, "__module__", self.build.__module__)
        object.__setattr__(self, "__qualname__", self.build.__qualname__)

    def __call__(self, images, config: ModelConfig):
        return self.build(images, config)


BACKBONES: Registry[Backbone] = Registry("backbone", "model.backbone")


def register(
    name: str, *, options: type = PluginOptions, min_image_size: int = 1, search_defaults: dict | None = None,
    searched: bool = True,
):
    """Decorator: make a build function `(images, ModelConfig) -> features` selectable as `model.backbone`,
    with its options declared as `options`, a `PluginOptions` subclass."""

    def add(build: Callable) -> Callable:
        BACKBONES.add(name, Backbone(build, min_image_size, options, search_defaults or {}, searched))
        return build

    return add


def names() -> list[str]:
    """The backbones a config may name (`model.backbone`)."""
    return BACKBONES.names()


def get(name: str) -> Backbone:
    return BACKBONES.get(name)


def check_image_size(model: ModelConfig, data: DataConfig) -> None:
    """Refuse, in one sentence, images smaller than the backbone can see."""
    smallest = get(model.backbone.type).min_image_size
    if data.image_size < smallest:
        raise UserError(
            f"Config field 'data.image_size' must be >= {smallest} for the {model.backbone.type} backbone, "
            f"got {data.image_size}."
        )


@dataclass(frozen=True)
class ResidualOptions(PluginOptions):
    """The size of a residual network; LeNet's layers are fixed and it has no options."""

    width: int = number(32, at_least=1, at_most=1024)  # channels of the first stage
    depth: int = number(1, at_least=1, at_most=64)  # residual blocks per stage


# Width and depth searched for the residual networks.
RESIDUAL_SEARCH = {"width": [16, 32], "depth": [1, 2]}


# Smaller leaves its second convolution (after two poolings) nothing to see.
@register("lenet", min_image_size=16)
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
    size = config.backbone
    x = _conv_bn_relu(x, size.width, stride=2)
    for stage in range(3):
        for block in range(size.depth):
            stride = 2 if (block == 0 and stage > 0) else 1
            x = _residual_block(x, size.width * 2**stage, stride, conv)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(config.dropout)(x)


@register("resnet", options=ResidualOptions, search_defaults=RESIDUAL_SEARCH)
def resnet(images, config: ModelConfig):
    """A small ResNet sized for a 2-core CPU: about 4x LeNet's compute, a third of its parameters.

    With width 32 and depth 1 it is a ResNet-8. Plain convolutions, not depthwise-separable ones:
    on this CPU TensorFlow runs them several times faster for the same multiply-adds.
    """
    return _residual_network(images, config, layers.Conv2D)


# Not in the default search: measured slower per multiply-add and less accurate than resnet (README).
@register("dsresnet", options=ResidualOptions, search_defaults=RESIDUAL_SEARCH, searched=False)
def dsresnet(images, config: ModelConfig):
    """The same network with depthwise-separable convolutions in its blocks: far fewer
    parameters and multiply-adds, but slower per multiply-add on this CPU."""
    return _residual_network(images, config, layers.SeparableConv2D)

