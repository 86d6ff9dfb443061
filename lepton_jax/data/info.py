"""What a dataset is, without its data: the description the Task core is built from and a
run records in run.json."""

import dataclasses
from typing import Any

import numpy as np

from lepton_jax.data import splits


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
  # The tokenizer of token inputs (tokenizers.Tokenizer.spec; None: not text, or bytes before
  # tokenizers were recorded): predict rebuilds it from run.json without the data.
  tokenizer: dict | None = None
  # A host-side transform every example gets when read, {"name": ..., "args": ...} of
  # sources.READ_TRANSFORMS (e.g. standardizing with training-split statistics); {}: none.
  transform: dict = dataclasses.field(default_factory=dict)

  def split_size(self, split: str) -> int:
    """Examples in `split`: a split name or tfds slicing syntax ('test[:1000]', 'train[90%:]')."""
    return splits.size(split, self.split_sizes, self.name)

  def to_dict(self) -> dict:
    """JSON-able facts (run.json's `dataset`)."""
    return {"name": self.name, "input_key": self.input_key,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "input_dtype": np.dtype(self.input_dtype).name, "num_classes": self.num_classes,
            "label_names": list(self.label_names), "label_key": self.label_key,
            "split_sizes": dict(self.split_sizes), "input_description": self.input_description,
            **({"tokenizer": dict(self.tokenizer)} if self.tokenizer else {}),
            **({"transform": dict(self.transform)} if self.transform else {})}

  @classmethod
  def from_dict(cls, d: dict) -> "DatasetInfo":
    """The inverse of to_dict (run.json files written before `label_key` existed load too)."""
    shape = d.get("input_shape")
    return cls(name=d["name"], input_key=d["input_key"],
               input_shape=tuple(shape) if shape is not None else None,
               input_dtype=np.dtype(d["input_dtype"]), num_classes=int(d["num_classes"]),
               split_sizes=dict(d.get("split_sizes", {})), label_names=tuple(d.get("label_names", ())),
               label_key=d.get("label_key", "label"), input_description=d.get("input_description", ""),
               tokenizer=d.get("tokenizer"), transform=dict(d.get("transform") or {}))
