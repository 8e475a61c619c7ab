"""Hyperparameter search with Keras Tuner (`mtl tune`): search spaces, the hypermodel, running, the report.

- `space`: which hyperparameters a search varies and how a trial's values become a config;
- `hypermodel`: a trial builds and fits an approach's stages exactly as `mtl train` does;
- `search`: the search's settings and directory, resuming, chief and workers;
- `report`: the best trials' table and the best config;
- `options`: the command's choices, importable without TensorFlow.

This package's `__init__` imports nothing, so `mtl --help` stays free of TensorFlow.
"""
