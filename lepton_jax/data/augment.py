"""Augmentation ops (kind "op").

    config.data.preprocess = ("normalize(mean='dataset', std='dataset')",)
    config.data.augment = ("random_crop(padding=4)", "flip_lr")
    config.data.augment = ("random_resized_crop(scale=(0.35, 1.0))", "flip_lr")

Every op acts on a batch of images (B, H, W[, C]) inside the jitted train step
and draws independently per example from the step's rng (see transforms.per_example):
the same rng gives the same output, and outputs keep the input's shape and
dtype. `data.augment` runs after `data.preprocess`, so crops pad with 0, which
is the mean colour once the images are normalized.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax import registry
from lepton_jax.data import transforms
from lepton_jax.errors import UserError

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
