"""The names the package itself registers, known without importing TensorFlow.

The command's help lists them, and `mtl train multitsk` is refused with a "did you mean" before TensorFlow's seconds of start-up
(`mtl.cli.check_names_early`). The registries stay the truth: with a plug-in module named the
check waits for them, and a test keeps these lists equal to what the registries hold without one.
"""

APPROACHES = ("separate", "crosslabel", "multitask")
BACKBONES = ("lenet", "resnet", "dsresnet")
# What may answer `mtl predict` (mtl.predict): auto is LiteRT where the model's own export lies beside it, else Keras.
RUNTIMES = ("auto", "litert", "keras")
# The face detectors of mtl.faces; the default finds faces for `mtl predict` and for scoring on detected faces.
DETECTORS = ("yuface", "mtcnn")
DEFAULT_DETECTOR = "yuface"
