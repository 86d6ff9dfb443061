"""What a dataset is, without its data: the description the Task core is built from and a
run records in run.json."""

import dataclasses
import types
from typing import Any

from lepton_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model and the experiment need to know about a dataset."""

  name: str
  input_key: str  # the feature fed to the model: 'image', 'features' or 'tokens'
  input_shape: tuple  # one example, e.g. (28, 28, 1)
  input_dtype: Any
  num_classes: int
  split_sizes: dict
  label_names: tuple = ()
  label_key: str = "label"
  # How raw inputs were made (for predict/export to do the same to new inputs).
  input_description: str = ""

  def split_size(self, split: str) -> int:
    """Examples in `split`: a split name or tfds slicing syntax ('test[:1000]', 'train[90%:]')."""
    if split in self.split_sizes:
      return self.split_sizes[split]
    if "[" in split or "+" in split:
      import tensorflow_datasets as tfds
      infos = {k: types.SimpleNamespace(num_examples=v) for k, v in self.split_sizes.items()}
      try:
        parts = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
      except (ValueError, KeyError, AssertionError):
        parts = None
      if parts is not None:
        return sum(len(range(self.split_sizes[p.splitname])[p.from_:p.to]) for p in parts)
    raise UserError(f"dataset {self.name!r} has no split {split!r}; splits are "
                    f"{', '.join(sorted(self.split_sizes))} (slices like 'test[:1000]' work too)")
