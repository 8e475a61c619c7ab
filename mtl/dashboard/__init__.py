"""What runs leave for TensorBoard: HParams rows (`hparams`) and pictures (`figures`).

Not named `tensorboard`, so that running a file from inside `mtl/` can never shadow the real
`tensorboard` package these modules import.
"""
