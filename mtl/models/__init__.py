"""Networks: a named backbone, then one softmax head per output (see `build`)."""
