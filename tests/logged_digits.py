"""A test dataset: scikit-learn's digits, recording which examples each process reads
(tests/test_multiprocess.py imports it through config.imports)."""

import os

import jax

from lepton_jax import registry
from lepton_jax.data import datasets

LOG_DIR = "LEPTON_TEST_READ_LOG"  # the environment variable naming the folder of the logs


class _Logged:
  """A source that appends every index it reads to `path` (one line per read)."""

  def __init__(self, source, split: str):
    self.source, self.split = source, split

  def __len__(self):
    return len(self.source)

  def _log(self, indices):
    path = os.path.join(os.environ[LOG_DIR], f"{self.split}.{jax.process_index()}")
    with open(path, "a") as f:  # one write per read: whole lines even from several threads
      f.write(" ".join(str(int(i)) for i in indices) + "\n")

  def __getitem__(self, index):
    self._log([index])
    return self.source[index]

  def __getitems__(self, indices):
    self._log(indices)
    return self.source.__getitems__(indices)


@registry.register("dataset", "_logged_digits")
class LoggedDigits(datasets.Digits):
  """digits, each read recorded in $LEPTON_TEST_READ_LOG/<split>.<process index>."""

  def source(self, split):
    return _Logged(super().source(split), split)


def reads(log_dir: str, split: str, process: int) -> list[int]:
  path = os.path.join(log_dir, f"{split}.{process}")
  with open(path) as f:
    return [int(i) for line in f for i in line.split()]
