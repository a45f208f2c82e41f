"""Flags of the two Omnigrok MNIST entry points (omnigrok_mnist.py, mnist_variants.py) that are
not config fields: where the MNIST files are and how many training images to take."""

from __future__ import annotations

from absl import flags

flags.DEFINE_string("data_dir", "", "folder with the four MNIST IDX files")
flags.DEFINE_integer("n_train", 1000, "first n_train MNIST training images", lower_bound=1)
