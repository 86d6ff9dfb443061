"""Helpers of the prepared-records tests: tiny image folders, a toy tokenizer, subprocesses."""

import os
import subprocess
import sys

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


class WordTokenizer:
  """A toy subword-free tokenizer: ids of the distinct characters of a fixed alphabet."""

  def __init__(self, alphabet: str):
    self.alphabet = alphabet
    self.vocab_size = len(alphabet)
    self.fingerprint = f"chars:{alphabet}"

  def encode(self, text: str) -> list[int]:
    return [self.alphabet.index(c) for c in text if c in self.alphabet]

  def decode(self, ids) -> str:
    return "".join(self.alphabet[i] for i in ids)


def run_python(code: str, env_extra: dict | None = None, timeout: float = 240,
               check: bool = True) -> subprocess.CompletedProcess:
  """Runs `code` in a fresh interpreter with this worktree first on the path."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  env.update(env_extra or {})
  result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
  if check and result.returncode != 0:
    raise AssertionError(f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
  return result
