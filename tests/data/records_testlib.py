"""Helpers of the prepared-records tests: tiny image folders."""

import os

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MNIST_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")


def write_images(root, classes=("cat", "dog"), per_class=6, size=(10, 12), seed=0, fmt="png",
                 base=""):
  """per_class random RGB images per class folder under root/base; returns their paths."""
  rng = np.random.default_rng(seed)
  paths = []
  for c in classes:
    folder = os.path.join(str(root), base, c)
    os.makedirs(folder, exist_ok=True)
    for i in range(per_class):
      path = os.path.join(folder, f"{i}.{fmt}")
      Image.fromarray(rng.integers(0, 256, tuple(size) + (3,), dtype=np.uint8)).save(path)
      paths.append(path)
  return paths
