"""Split names with slices: 'test', 'test[:1000]', 'train[90%:]', 'train[:10%]+validation'.

The syntax and rounding are tfds' (https://www.tensorflow.org/datasets/splits): a slice is
[from:to] in examples or in percent (rounded to the closest example), negative numbers count
from the end, and '+' joins parts in order. Parsed here, without tensorflow-datasets, so that
every dataset accepts them.
"""

import re

from lepton_jax.errors import UserError

_PART = re.compile(r"^(?P<name>[\w-]+)(\[(?P<slice>[^\]]*)\])?$")
_BOUND = re.compile(r"^(?P<value>-?\d+(\.\d+)?)?(?P<percent>%)?$")


def _bound(text: str, size: int, spec: str, dataset: str) -> int | None:
  match = _BOUND.match(text.strip())
  if match is None:
    raise _bad(spec, dataset)
  if match["value"] is None:
    return None
  value = float(match["value"])
  if match["percent"]:
    if abs(value) > 100:
      raise _bad(spec, dataset)
    return int(round(value * size / 100.0))
  if "." in match["value"]:
    raise _bad(spec, dataset)
  return int(value)


def _bad(spec: str, dataset: str) -> UserError:
  return UserError(f"dataset {dataset!r} has no split {spec!r}: write a split name with an "
                   "optional slice, e.g. 'test', 'test[:1000]', 'train[90%:]' or "
                   "'train[:10%]+validation'")


def resolve(spec: str, sizes: dict, dataset: str = "") -> list[tuple[str, int, int]]:
  """[(split name, lo, hi)] of the examples `spec` selects, in order."""
  parts = []
  for text in str(spec).split("+"):
    match = _PART.match(text.strip())
    if match is None:
      raise _bad(spec, dataset)
    name = match["name"]
    if name not in sizes:
      raise UserError(f"dataset {dataset!r} has no split {name!r}; splits are "
                      f"{', '.join(sorted(sizes))} (slices like 'test[:1000]' work too)")
    size = int(sizes[name])
    lo, hi = 0, size
    if match["slice"] is not None:
      bounds = match["slice"].split(":")
      if len(bounds) != 2:
        raise _bad(spec, dataset)
      start, stop = (_bound(b, size, spec, dataset) for b in bounds)
      lo, hi, _ = slice(start, stop).indices(size)
    parts.append((name, lo, max(lo, hi)))
  return parts


def size(spec: str, sizes: dict, dataset: str = "") -> int:
  """Examples `spec` selects."""
  return sum(hi - lo for _, lo, hi in resolve(spec, sizes, dataset))


class SlicedSource:
  """The examples of a sliced split: parts of random-access sources, joined in order."""

  def __init__(self, parts: list):  # [(source, lo, hi)]
    self.parts = [(source, lo, hi) for source, lo, hi in parts if hi > lo]
    self._starts = []
    total = 0
    for _, lo, hi in self.parts:
      self._starts.append(total)
      total += hi - lo
    self._length = total

  def __len__(self) -> int:
    return self._length

  def _locate(self, index: int) -> tuple:
    if not 0 <= index < self._length:
      raise IndexError(index)
    for (source, lo, _), start in zip(reversed(self.parts), reversed(self._starts)):
      if index >= start:
        return source, lo + index - start
    raise IndexError(index)

  def __getitem__(self, index) -> dict:
    source, i = self._locate(int(index))
    return source[i]

  def __getitems__(self, indices) -> list[dict]:
    located = [self._locate(int(i)) for i in indices]
    if len({id(s) for s, _ in located}) == 1 and hasattr(located[0][0], "__getitems__"):
      return list(located[0][0].__getitems__([i for _, i in located]))
    return [source[i] for source, i in located]
