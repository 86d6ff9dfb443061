"""Split names with tfds' slices (lepton_jax/data/splits.py), checked against tfds itself."""

import numpy as np
import pytest

from lepton_jax.data import sources, splits
from lepton_jax.errors import UserError

SIZES = {"train": 1437, "test": 360, "validation": 7}
SPECS = ["train", "test[:100]", "test[100:]", "train[90%:]", "train[:10%]", "train[-5:]",
         "test[33%:66%]", "train[:-10%]", "test[:50]+validation", "validation[-3:-1]",
         "test[-20%:]"]


def test_ranges_are_tfds_own():
  tfds = pytest.importorskip("tensorflow_datasets")
  import types
  infos = {k: types.SimpleNamespace(num_examples=v) for k, v in SIZES.items()}
  for spec in SPECS:
    want = []
    for p in tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos):
      rows = range(SIZES[p.splitname])[p.from_:p.to]
      want.append((p.splitname, rows.start, rows.stop))
    assert splits.resolve(spec, SIZES) == want, spec
    assert splits.size(spec, SIZES) == sum(hi - lo for _, lo, hi in want)


def test_a_sliced_source_reads_the_selected_examples_in_order():
  a = sources.ArraySource({"x": np.arange(10)})
  b = sources.ArraySource({"x": np.arange(100, 105)})
  sliced = splits.SlicedSource([(a, 7, 10), (b, 0, 2), (a, 0, 0)])
  assert len(sliced) == 5
  assert [int(sliced[i]["x"]) for i in range(5)] == [7, 8, 9, 100, 101]
  assert [int(e["x"]) for e in sliced.__getitems__([4, 0, 3])] == [101, 7, 100]
  with pytest.raises(IndexError):
    sliced[5]


def test_bad_specs_are_one_line_errors():
  for spec, message in (("tset", "has no split 'tset'; splits are"),
                        ("test[1:2:3]", "write a split name with an optional slice"),
                        ("test[abc]", "write a split name"), ("test[:150%]", "write a split name")):
    with pytest.raises(UserError, match=message) as e:
      splits.resolve(spec, SIZES, "digits")
    assert "\n" not in str(e.value)
