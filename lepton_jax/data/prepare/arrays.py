"""Sources that load whole splits as arrays (MNIST, CIFAR-10, scikit-learn's sets): the
common part of their preparation."""

import abc
import hashlib
import os

import numpy as np

from lepton_jax.data import records
from lepton_jax.data.prepare import core

EXAMPLES_PER_UNIT = 65536


def files_fingerprint(paths) -> str:
  """Names, sizes and modification times of source files: cheap to check on every use."""
  h = hashlib.sha256()
  for path in paths:
    st = os.stat(path)
    h.update(f"{os.path.basename(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
  return h.hexdigest()


class ArrayPreparer(core.Preparer):
  """Subclasses define `load() -> {split: {feature: array}}` and `features()`; the loaded
  arrays are kept for the preparation (small datasets: they fit in memory)."""

  noun = "examples"

  def __init__(self):
    self._arrays = None

  def __getstate__(self):
    return {**self.__dict__, "_arrays": None}

  @abc.abstractmethod
  def load(self) -> dict[str, dict[str, np.ndarray]]:
    """Every split's arrays."""

  def check_source(self) -> None:
    self.arrays()  # loading checks the files (checksums, headers); the arrays are kept

  def arrays(self) -> dict[str, dict[str, np.ndarray]]:
    if self._arrays is None:
      self._arrays = self.load()
    return self._arrays

  def plan(self) -> list[core.Unit]:
    chunks = []
    for split, arrays in self.arrays().items():
      n = len(next(iter(arrays.values())))
      chunks += [(split, range(lo, min(n, lo + EXAMPLES_PER_UNIT)))
                 for lo in range(0, max(n, 1), EXAMPLES_PER_UNIT)]
    return core.number_units(chunks)

  def examples(self, unit: core.Unit):
    arrays = self.arrays()[unit.split]
    for i in unit.items:
      yield {k: v[i] for k, v in arrays.items()}

  def fingerprint(self) -> str:
    return f"{records.FORMAT}|{self.name}|{self.slug()}"
