"""mtl: recognise gender and emotion (happy/sad) of a face, separately, cross-labelled or multi-task."""

__version__ = "0.1.0"
