"""Dataset readers and tf.data pipelines."""
