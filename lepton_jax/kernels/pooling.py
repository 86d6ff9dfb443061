"""Max/average pooling with a choice of gradient formulation.

Drop-in equivalents of `flax.linen.max_pool` / `avg_pool` for inputs shaped
(batch..., spatial..., features), e.g. NHWC.

Why this module exists: on XLA:CPU the gradient of `lax.reduce_window` max is a
select-and-scatter that runs far slower than the rest of a small CNN's step
(see benchmarks/README.md for the measured step times). When the windows tile
the input (stride == window, after padding and VALID cropping), pooling is just
a reshape to (B, o1, k1, o2, k2, ..., C) and a reduction over the k axes.

impl:
  'reduce_window'  `lax.reduce_window`, exactly what flax does.
  'reshape'        reshape + `jnp.max`/`jnp.sum`; JAX's own reduce-max gradient.
  'mask_vjp'       reshape + max under a `jax.custom_vjp`: the input is
                   materialized behind an optimization barrier (XLA:CPU runs
                   the reduction ~2x slower with its producer fused in) and the
                   backward puts the cotangent on each window's first argmax.
  'auto'           the fastest measured on the current backend (CPU:
                   'mask_vjp'); on GPU/TPU 'reduce_window', whose native
                   select-and-scatter is fast there.
The fast paths fall back to 'reduce_window' for overlapping windows (stride !=
window), negative padding, non-float dtypes and windows larger than the padded
input.

Gradient convention for ties in max_pool (several maximal elements in one window):
  'reduce_window' and 'mask_vjp' send the whole cotangent to the FIRST maximal
  element in row-major window order (XLA's select-and-scatter with `>=`); the two
  gradients are bitwise equal. 'reshape' splits it evenly among the tied
  elements (JAX's reduce-max rule). Per-window gradient sums agree in all three.
  A NaN in a window makes every impl's forward NaN; the gradient placement for
  such a window is unspecified.

For avg_pool, 'mask_vjp' means the same as 'reshape' (a sum has no mask), so a
model-wide impl setting can be shared by max and average pooling layers.
"""

from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ("auto", "reduce_window", "reshape", "mask_vjp")

Padding = Union[str, Sequence[Sequence[int]]]


def auto_impl(backend: str = None) -> str:
  """The impl that 'auto' resolves to on `backend` (default: jax's default backend)."""
  backend = backend or jax.default_backend()
  return "mask_vjp" if backend == "cpu" else "reduce_window"


def max_pool(x, window: Sequence[int], strides: Sequence[int] = None, padding: Padding = "VALID",
             *, impl: str = "auto"):
  """Max pooling; same signature and results as `flax.linen.max_pool` plus `impl`."""
  window, strides = _check(x, window, strides, impl)
  impl = auto_impl() if impl == "auto" else impl
  plan = _plan(x, window, strides, padding) if impl != "reduce_window" else None
  if plan is None:
    return _reduce_window(x, window, strides, padding, -jnp.inf, lax.max)
  xb = _to_blocks(x, window, plan, -jnp.inf)
  yb = _block_max_vjp(xb) if impl == "mask_vjp" else jnp.max(xb, axis=_block_axes(xb))
  return _from_blocks(yb, x.shape, len(window))


def avg_pool(x, window: Sequence[int], strides: Sequence[int] = None, padding: Padding = "VALID",
             count_include_pad: bool = True, *, impl: str = "auto"):
  """Average pooling; same signature and results as `flax.linen.avg_pool` plus `impl`."""
  window, strides = _check(x, window, strides, impl)
  impl = auto_impl() if impl == "auto" else impl
  plan = _plan(x, window, strides, padding) if impl != "reduce_window" else None
  if plan is None:
    y = _reduce_window(x, window, strides, padding, 0.0, lax.add)
    if count_include_pad:
      return y / np.prod(window)
    ones = jnp.ones(x.shape[x.ndim - len(window) - 1:-1] + (1,), x.dtype)
    return y / _reduce_window(ones, window, strides, padding, 0.0, lax.add)
  xb = _to_blocks(x, window, plan, 0)
  y = _from_blocks(jnp.sum(xb, axis=_block_axes(xb)), x.shape, len(window))
  if count_include_pad or not any(lo or hi for lo, hi in plan):
    return y / np.prod(window)
  return y / _valid_counts(x.shape, window, plan).astype(y.dtype)


def _check(x, window, strides, impl):
  if impl not in IMPLS:
    raise ValueError(f"pooling impl must be one of {IMPLS}, got {impl!r}")
  window = tuple(int(k) for k in window)
  strides = tuple(int(s) for s in strides) if strides is not None else (1,) * len(window)
  if len(strides) != len(window):
    raise ValueError(f"len(window)={len(window)} != len(strides)={len(strides)}")
  if x.ndim < len(window) + 1:
    raise ValueError(f"input of shape {x.shape} has too few dims for window {window} "
                     "(expected (batch..., spatial..., features))")
  return window, strides


def _reduce_window(x, window, strides, padding, init, op):
  """The flax formulation (`flax.linen.pooling.pool`), leading batch dims allowed."""
  nb = x.ndim - len(window) - 1
  dims = (1,) * nb + window + (1,)
  strd = (1,) * nb + strides + (1,)
  if not isinstance(padding, str):
    padding = ((0, 0),) * nb + tuple(tuple(p) for p in padding) + ((0, 0),)
  if nb == 0:  # lax.reduce_window wants a batch dim, flax adds one the same way
    return lax.reduce_window(x[None], init, op, (1,) + dims, (1,) + strd,
                             padding if isinstance(padding, str) else ((0, 0),) + padding)[0]
  return lax.reduce_window(x, init, op, dims, strd, padding)


def _plan(x, window, strides, padding):
  """Per-spatial-dim (pad_lo, pad_hi) if the windows tile the padded input, else None.

  pad_hi may come out negative: that is VALID cropping of the trailing rows
  that no window covers.
  """
  if window != strides or not jnp.issubdtype(x.dtype, jnp.floating):
    return None
  spatial = x.shape[x.ndim - len(window) - 1:-1]
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(spatial, window, strides, padding)
  else:
    pads = tuple(tuple(int(v) for v in p) for p in padding)
    if len(pads) != len(window) or any(len(p) != 2 for p in pads):
      raise ValueError(f"padding {padding} must give one (low, high) pair per window dim")
  plan = []
  for n, k, (lo, hi) in zip(spatial, window, pads):
    if lo < 0 or hi < 0:
      return None
    padded = n + lo + hi
    if padded < k:
      return None
    plan.append((lo, hi - padded % k))  # stride == window: out = padded // k
  return tuple(plan)


def _to_blocks(x, window, plan, pad_value):
  """(B..., n1, n2, ..., C) -> (B, o1, k1, o2, k2, ..., C) with one flat batch dim."""
  nsp = len(window)
  batch = x.shape[:x.ndim - nsp - 1]
  x = x.reshape((int(np.prod(batch)),) + x.shape[len(batch):])
  if any(hi < 0 for _, hi in plan):
    x = x[(slice(None),) + tuple(slice(0, n + min(hi, 0)) for n, (_, hi) in
                                 zip(x.shape[1:], plan))]
  if any(lo > 0 or hi > 0 for lo, hi in plan):
    cfg = [(0, 0, 0)] + [(lo, max(hi, 0), 0) for lo, hi in plan] + [(0, 0, 0)]
    x = lax.pad(x, jnp.array(pad_value, x.dtype), cfg)
  shape = [x.shape[0]]
  for n, k in zip(x.shape[1:-1], window):
    shape += [n // k, k]
  return x.reshape(shape + [x.shape[-1]])


def _from_blocks(yb, in_shape, nsp):
  batch = in_shape[:len(in_shape) - nsp - 1]
  return yb.reshape(batch + yb.shape[1:])


def _block_axes(xb):
  return tuple(range(2, xb.ndim - 1, 2))


def _valid_counts(in_shape, window, plan):
  """Number of unpadded elements per output window, as (o1, o2, ..., 1)."""
  counts = np.ones((), np.float32)
  for n, k, (lo, hi) in zip(in_shape[len(in_shape) - len(window) - 1:-1], window, plan):
    row = np.concatenate([np.zeros(lo), np.ones(n + min(hi, 0)), np.zeros(max(hi, 0))])
    counts = np.multiply.outer(counts, row.reshape(-1, k).sum(1))
  return jnp.asarray(counts[..., None])


@jax.custom_vjp
def _block_max_vjp(xb):
  return _block_max_fwd(xb)[0]


def _block_max_fwd(xb):
  # The barrier materializes xb once. Without it XLA:CPU fuses xb's producer
  # (e.g. the shifted-sum conv + relu) into the max reduction, which then runs
  # ~2x slower than conv and reduction apart, and into the backward consumers,
  # recomputing it there (seed CNN step +10%; +50% for a backward that reads
  # the window several times).
  xb = lax.optimization_barrier(xb)
  return jnp.max(xb, axis=_block_axes(xb)), xb


def _block_max_bwd(xb, g):
  # Window elements moved to one trailing axis, in row-major window order, so
  # that jnp.argmax (first maximum wins) gives XLA's select-and-scatter choice.
  # Measured on XLA:CPU (seed CNN step): a min-reduction of masked positions
  # over the strided window axes is ~40% slower; a plain equality mask is ~5%
  # faster but sends the cotangent to every tied element.
  axes = _block_axes(xb)
  keep = (0,) + tuple(range(1, xb.ndim - 1, 2)) + (xb.ndim - 1,)
  perm = keep + axes
  flat = xb.transpose(perm).reshape(xb.shape[:1] + g.shape[1:] + (-1,))
  onehot = jax.nn.one_hot(jnp.argmax(flat, axis=-1), flat.shape[-1], dtype=g.dtype)
  dflat = onehot * g[..., None]
  dxb = dflat.reshape(tuple(xb.shape[a] for a in perm)).transpose(np.argsort(perm))
  return (dxb.astype(xb.dtype),)


_block_max_vjp.defvjp(_block_max_fwd, _block_max_bwd)
