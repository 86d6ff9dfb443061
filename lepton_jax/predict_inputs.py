"""Reading raw inputs for a trained model: image, .npy and table files (and
directories of them), checked against the model's input shape and dtype.

`InputFiles` is mixed into `predict.Predictor`, which supplies `input_shape`
and `input_dtype`; the checks raise a UserError that names the file and what
the model takes instead. Images of another size or mode (a 640x480 RGB photo
for an 8x8 grayscale model) are resized and converted; a `Conversions` log
records each kind of conversion for a one-line note, or refuses the first one
(`strict`, predict's --strict).
"""

import os
from typing import Sequence

import numpy as np

from lepton_jax.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
ARRAY_EXTENSIONS = (".npy",)
TABLE_EXTENSIONS = (".csv", ".txt", ".tsv")
_IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class Conversions:
  """What loading did to images to fit the model: counts per kind of conversion, for one note
  each; with `strict`, a UserError at the first conversion instead."""

  def __init__(self, strict: bool = False):
    self.strict = strict
    self._counts: dict[tuple[str, str, str], int] = {}

  def record(self, path: str, source: str, target: str, resized: bool, converted: bool) -> None:
    what = " and ".join(w for w, done in (("resized", resized), ("converted", converted)) if done)
    if self.strict:
      raise UserError(f"{path}: is {source}, the model takes {target}; --strict refuses inputs that "
                      f"would be {what}: give {target} images, or drop --strict")
    key = (what, source, target)
    self._counts[key] = self._counts.get(key, 0) + 1

  def notes(self) -> list[str]:
    """One line per kind of conversion, e.g. 'note: resized and converted 3 images from 640x480
    RGB to 8x8 L (the model's input)'."""
    return [f"note: {what} {n} image{'s' if n != 1 else ''} from {source} to {target} (the "
            "model's input)" for (what, source, target), n in self._counts.items()]


class InputFiles:
  """Reading and checking raw inputs; the class it is mixed into defines
  `input_shape` (tuple) and `input_dtype` (np.dtype) of one example."""

  input_shape: tuple
  input_dtype: np.dtype

  def check_batch(self, batch, source: str = "batch") -> np.ndarray:
    """`batch` as a (N, *input_shape) array of the input dtype, or a UserError."""
    x = np.asarray(batch)
    shape = self.input_shape
    if x.ndim == len(shape) + 1 and x.shape[1:] == shape:
      pass
    elif len(shape) == 3 and shape[-1] == 1 and x.shape[1:] == shape[:-1]:
      x = x[..., None]  # grayscale without a channel axis
    else:
      raise UserError(f"{source}: shape {x.shape} does not fit the model's input: expected "
                      f"(N, {', '.join(map(str, shape))}){_channel_hint(x.shape[1:], shape)}")
    return _cast(x, self.input_dtype, source)

  def load_file(self, path: str, conversions: Conversions | None = None) -> np.ndarray:
    """The raw examples in one input file, as (n, *input_shape); images converted to fit are
    recorded in `conversions`."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
      raise UserError(f"{path}: no such file")
    if ext in ARRAY_EXTENSIONS:
      try:
        x = np.load(path, allow_pickle=False)
      except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable .npy array ({e})") from e
      shape = self.input_shape
      grayscale = len(shape) == 3 and shape[-1] == 1
      if x.ndim == len(shape) or (grayscale and x.shape == shape[:-1]):
        x = x[None]  # one example (wrong sizes are reported against the input shape)
      return self.check_batch(x, path)
    if ext in TABLE_EXTENSIONS:
      if len(self.input_shape) != 1:
        raise UserError(f"{path}: a table of numbers fits 1-D feature inputs only; this model takes "
                        f"{self.input_shape} {self.input_dtype.name} examples (give an image or .npy)")
      try:
        x = np.loadtxt(path, delimiter="\t" if ext == ".tsv" else ",", ndmin=2, dtype=np.float64)
      except ValueError as e:
        raise UserError(f"{path}: expected rows of {self.input_shape[0]} comma-separated numbers ({e})") from e
      return self.check_batch(x, path)
    if ext in IMAGE_EXTENSIONS or ext == "":
      return self.load_image(path, conversions)[None]
    raise UserError(f"{path}: unknown input type {ext!r}; give an image "
                    f"({', '.join(IMAGE_EXTENSIONS[:3])}), .npy or .csv file")

  def load_image(self, path: str, conversions: Conversions | None = None) -> np.ndarray:
    """One image file as the dataset's (H, W, C) uint8, converted and resized as needed (and
    recorded in `conversions`)."""
    shape = self.input_shape
    channels = shape[-1] if len(shape) == 3 else (1 if len(shape) == 2 else None)
    if channels not in _IMAGE_MODES or self.input_dtype != np.uint8:
      raise UserError(f"{path}: this model takes {shape} {self.input_dtype.name} inputs, not images; "
                      "give a .npy or .csv file")
    from PIL import Image, UnidentifiedImageError
    mode = _IMAGE_MODES[channels]
    try:
      with Image.open(path) as img:
        img.load()
        original_mode = img.mode
        img = img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
      raise UserError(f"{path}: cannot decode as an image ({type(e).__name__}); give a PNG or JPEG "
                      f"file") from e
    height, width = shape[0], shape[1]
    resized, converted = img.size != (width, height), original_mode != mode
    if resized or converted:
      (conversions or Conversions()).record(
          path, f"{img.size[0]}x{img.size[1]} {original_mode}", f"{width}x{height} {mode}",
          resized, converted)
    if resized:
      img = img.resize((width, height), Image.BILINEAR)
    x = np.asarray(img, np.uint8)
    return x[..., None] if x.ndim == 2 and len(shape) == 3 else x

  def load_inputs(self, paths: Sequence[str],
                  conversions: Conversions | None = None) -> tuple[list[str], np.ndarray]:
    """(names, batch) of every example in `paths`; a file of n examples gives names file[i]."""
    names, parts = [], []
    for path in expand_inputs(paths):
      x = self.load_file(path, conversions)
      parts.append(x)
      names.extend([path] if len(x) == 1 else [f"{path}[{i}]" for i in range(len(x))])
    if not parts:
      raise UserError("no inputs: give image, .npy or .csv files (or directories of them)")
    return names, np.concatenate(parts)


def _channel_hint(got: tuple, want: tuple) -> str:
  if len(got) == len(want) and got[:-1] == want[:-1] and got[-1] != want[-1]:
    return f" ({got[-1]} channels where the model takes {want[-1]})"
  return ""


def _cast(x: np.ndarray, dtype: np.dtype, source: str) -> np.ndarray:
  if x.dtype == dtype:
    return x
  if np.issubdtype(dtype, np.integer):
    info = np.iinfo(dtype)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
      raise UserError(f"{source}: dtype {x.dtype} where the model takes {dtype.name}")
    if x.size and (np.any(x != np.round(x)) or x.min() < info.min or x.max() > info.max):
      raise UserError(f"{source}: values must be integers in [{info.min}, {info.max}] "
                      f"({dtype.name}), got {x.dtype} in [{x.min()}, {x.max()}]")
    return x.astype(dtype)
  if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
    raise UserError(f"{source}: dtype {x.dtype} where the model takes {dtype.name}")
  return x.astype(dtype)


def expand_inputs(paths: Sequence[str]) -> list[str]:
  """Files as given; directories as their input files, sorted."""
  out = []
  known = IMAGE_EXTENSIONS + ARRAY_EXTENSIONS + TABLE_EXTENSIONS
  for path in paths:
    if os.path.isdir(path):
      out.extend(sorted(os.path.join(path, f) for f in os.listdir(path)
                        if os.path.splitext(f)[1].lower() in known))
    else:
      out.append(path)
  return out
