"""Augmentation ops (kind "op") and normalization by dataset statistics.

    config.data.preprocess = ("normalize(mean='dataset', std='dataset')",)
    config.data.augment = ("random_crop(padding=4)", "flip_lr")
    config.data.augment = ("random_resized_crop(scale=(0.35, 1.0))", "flip_lr")

Every op acts on a batch of images (B, H, W[, C]) inside the jitted train step
and draws independently per example from the step's rng (see transforms.per_example):
the same rng gives the same output, and outputs keep the input's shape and
dtype. `data.augment` runs after `data.preprocess`, so crops pad with 0, which
is the mean colour once the images are normalized.

Dataset statistics. `normalize(mean='dataset', std='dataset')` (either or both)
asks for the per-channel mean and standard deviation of the training split
(data.train_split), in units of x / max_value. `resolve_dataset_statistics`
computes them once on the host when the dataset is loaded (a dataset's
`info()` calls it) and rewrites the spec in `config.data` in place to the
numbers, e.g. "normalize(mean=(0.4914, 0.4822, 0.4465), std=(...))". The train
loop builds its ops from the resolved spec and writes it to the run's
config.json, so evaluation and predict reuse the very same numbers without
reading the training data again. The statistics are also cached next to the
prepared tfds data (lepton_statistics.json), so later runs skip the pass.
"""

import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax import registry
from lepton_jax.data import transforms
from lepton_jax.errors import UserError

DATASET = "dataset"  # the placeholder value for statistics of the training split
_STAT_KEYS = ("mean", "std")


# --------------------------------------------------------------------------- ops


def _image_axes(x):
  """(height axis, width axis) of one example (H, W[, C])."""
  if x.ndim not in (2, 3):
    raise UserError(f"image augmentation ops need (height, width[, channels]) examples, got an "
                    f"example of shape {x.shape}; remove the op from data.augment")
  return 0, 1


def _restore_dtype(y, dtype):
  if jnp.issubdtype(dtype, jnp.integer):
    info = jnp.iinfo(dtype)
    return jnp.clip(jnp.round(y), info.min, info.max).astype(dtype)
  return y.astype(dtype)


@registry.register("op", "random_crop")
def random_crop(padding: int = 4, mode: str = "constant"):
  """Pads each side by `padding` (constant 0, 'edge' or 'reflect') and crops back to the input size at a random offset."""
  if int(padding) != padding or padding < 0:
    raise UserError(f"random_crop: padding must be a non-negative integer, got {padding!r}")
  if mode not in ("constant", "edge", "reflect"):
    raise UserError(f"random_crop: mode must be 'constant', 'edge' or 'reflect', not {mode!r}")
  padding = int(padding)

  def crop(x, rng):
    _image_axes(x)
    h, w = x.shape[:2]
    pad = [(padding, padding), (padding, padding)] + [(0, 0)] * (x.ndim - 2)
    padded = jnp.pad(x, pad, mode=mode)
    dy, dx = jax.random.randint(rng, (2,), 0, 2 * padding + 1)
    start = (dy, dx) + (0,) * (x.ndim - 2)
    return jax.lax.dynamic_slice(padded, start, x.shape[:2] + x.shape[2:])

  return transforms.per_example(crop)


@registry.register("op", "flip_lr")
def flip_lr(probability: float = 0.5):
  """Mirrors each image left-right with `probability`."""
  if not 0.0 <= probability <= 1.0:
    raise UserError(f"flip_lr: probability must be in [0, 1], got {probability}")

  def flip(x, rng):
    _image_axes(x)
    return jnp.where(jax.random.bernoulli(rng, probability), x[:, ::-1], x)

  return transforms.per_example(flip)


@registry.register("op", "random_resized_crop")
def random_resized_crop(scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), attempts: int = 10,
                        method: str = "bilinear"):
  """Inception-style crop of a random area fraction `scale` and aspect `ratio`, resized back to the input size."""
  scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
  if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
    raise UserError(f"random_resized_crop: scale must be (low, high) with 0 < low <= high <= 1, "
                    f"got {scale}")
  if len(ratio) != 2 or not 0.0 < ratio[0] <= ratio[1]:
    raise UserError(f"random_resized_crop: ratio must be (low, high) with 0 < low <= high, got {ratio}")
  if method not in ("bilinear", "nearest", "cubic", "lanczos3", "lanczos5"):
    raise UserError(f"random_resized_crop: unknown resize method {method!r}")
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

  def crop(x, rng):
    _image_axes(x)
    h, w = x.shape[:2]
    area_rng, ratio_rng, pos_rng = jax.random.split(rng, 3)
    # `attempts` candidates at once; the first that fits wins (torchvision's loop, vectorized).
    area = jax.random.uniform(area_rng, (attempts,), minval=scale[0], maxval=scale[1]) * (h * w)
    aspect = jnp.exp(jax.random.uniform(ratio_rng, (attempts,), minval=log_ratio[0],
                                        maxval=log_ratio[1]))
    cw = jnp.round(jnp.sqrt(area * aspect))
    ch = jnp.round(jnp.sqrt(area / aspect))
    fits = (cw >= 1) & (cw <= w) & (ch >= 1) & (ch <= h)
    first = jnp.argmax(fits)
    # Fallback when none fits: the whole image, its aspect clipped to `ratio` (a centre crop).
    full_aspect = w / h
    fw = float(round(min(w, h * ratio[1]))) if full_aspect > ratio[1] else float(w)
    fh = float(round(min(h, w / ratio[0]))) if full_aspect < ratio[0] else float(h)
    crop_w = jnp.where(fits.any(), cw[first], fw)
    crop_h = jnp.where(fits.any(), ch[first], fh)
    u = jax.random.uniform(pos_rng, (2,))
    y0 = jnp.floor(u[0] * (h - crop_h + 1))
    x0 = jnp.floor(u[1] * (w - crop_w + 1))
    y0 = jnp.where(fits.any(), y0, (h - crop_h) // 2)
    x0 = jnp.where(fits.any(), x0, (w - crop_w) // 2)
    # Output pixel o samples input coordinate y0 + o * crop_h / h.
    s = jnp.stack([h / crop_h, w / crop_w])
    t = -jnp.stack([y0, x0]) * s
    y = jax.image.scale_and_translate(x.astype(jnp.float32), x.shape, (0, 1), s, t, method,
                                      antialias=True)
    return _restore_dtype(y, x.dtype)

  return transforms.per_example(crop)


# ------------------------------------------------------------ dataset statistics


def _format_spec(name: str, kwargs: dict) -> str:
  if not kwargs:
    return name
  return f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def needs_statistics(data_config) -> bool:
  """Whether data.preprocess or data.augment asks for dataset statistics."""
  for key in ("preprocess", "augment"):
    for spec in tuple(data_config.get(key, ()) or ()):
      _, kwargs = transforms.parse_spec(spec)
      if any(isinstance(v, str) and v == DATASET for v in kwargs.values()):
        return True
  return False


def channel_statistics(dataset, split: str, input_key: str = "image", max_value: float = 255.0,
                       chunk: int = 2048) -> tuple[tuple, tuple]:
  """Per-channel (last axis) mean and std of x / max_value over a whole split.

  Streams the split in chunks and sums in float64, so it needs little memory
  and gives the same numbers on every host. Inputs that are not images or
  feature vectors (e.g. (H, W) without a channel axis) get one scalar each.
  """
  import tensorflow_datasets as tfds
  builder = dataset.builder()
  ds = builder.as_dataset(split=split, batch_size=chunk, shuffle_files=False)
  total = sq = None
  count = 0
  for arrays in tfds.as_numpy(ds):
    arrays = dataset.host_transform(dict(arrays))
    x = np.asarray(arrays[input_key], np.float64) / max_value
    per_channel = x.ndim in (2, 4)  # (N, F) features or (N, H, W, C) images
    x = x.reshape(-1, x.shape[-1]) if per_channel else x.reshape(-1, 1)
    total = x.sum(0) if total is None else total + x.sum(0)
    sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
    count += x.shape[0]
  if not count:
    raise UserError(f"cannot compute dataset statistics: split {split!r} is empty")
  mean = total / count
  std = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
  std = np.where(std > 1e-8, std, 1.0)  # a constant channel: leave its scale alone
  as_tuple = lambda a: tuple(float(f"{v:.6g}") for v in a)  # noqa: E731
  return as_tuple(mean), as_tuple(std)


def _cached_statistics(dataset, split, input_key, max_value):
  """channel_statistics, cached in the prepared dataset's folder when it is writable."""
  key = f"{split}|{input_key}|{max_value}"
  path = None
  try:
    from etils import epath
    path = epath.Path(str(dataset.builder().data_dir)) / "lepton_statistics.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
  except Exception:  # unreadable cache: recompute
    cache = {}
  if key in cache:
    return tuple(cache[key]["mean"]), tuple(cache[key]["std"])
  mean, std = channel_statistics(dataset, split, input_key, max_value)
  if path is not None:
    try:
      cache[key] = {"mean": list(mean), "std": list(std)}
      path.write_text(json.dumps(cache, indent=1))
    except Exception:  # read-only data dir: fine, just not cached
      pass
  return mean, std


def resolve_dataset_statistics(data_config, dataset, input_key: str = "image") -> bool:
  """Rewrites 'dataset' placeholders of data.preprocess/data.augment to numbers.

  Called by train.Run once it has loaded the dataset, for every dataset;
  idempotent: once resolved, the specs hold numbers and later calls do nothing. Returns whether it changed
  the config.
  """
  if getattr(dataset, "_resolving", False) or not needs_statistics(data_config):
    return False
  split = str(data_config.get("train_split", "train"))
  dataset._resolving = True
  try:
    changed = False
    for key in ("preprocess", "augment"):
      specs = tuple(data_config.get(key, ()) or ())
      resolved = []
      for spec in specs:
        name, kwargs = transforms.parse_spec(spec)
        wanted = [k for k, v in kwargs.items() if isinstance(v, str) and v == DATASET]
        if not wanted:
          resolved.append(spec)
          continue
        bad = [k for k in wanted if k not in _STAT_KEYS]
        if bad:
          raise UserError(f"op {spec!r}: only mean and std can be 'dataset', not {', '.join(bad)}")
        mean, std = _cached_statistics(dataset, split, input_key,
                                       float(kwargs.get("max_value", 255.0)))
        stats = {"mean": mean, "std": std}
        kwargs = {k: (stats[k] if k in wanted else v) for k, v in kwargs.items()}
        resolved.append(_format_spec(name, kwargs))
        changed = True
        print(f"data: {name} uses {split!r} statistics mean={mean} std={std}", file=sys.stderr)
      if tuple(resolved) != specs:
        data_config[key] = tuple(resolved)
    return changed
  finally:
    dataset._resolving = False
