"""2-D convolution (NHWC input, HWIO kernel) with a fast path for few input channels.

Why: on XLA:CPU a convolution with very few input channels (the first layer of
an image model: 1 or 3) runs its forward and especially its weight gradient
through a generic conv kernel that is several times slower than the work needs
(see benchmarks/README.md). For such layers this module computes
  forward:  y = bias + sum over taps (i, j, c) of shifted(x)[..., c] * w[i, j, c, :]
            (one fused elementwise loop; no patch tensor, no conv kernel)
  kernel and bias gradients: [patches; ones] @ dy with patches laid out
            (taps, N*H*W), one plain matrix product.
  input gradient: XLA's own conv transpose (dead code when x is data, as for
            a first layer).

impl:
  'lax'      `lax.conv_general_dilated`, what `flax.linen.Conv` does.
  'shifted'  the formulation above; falls back to 'lax' when strides are not 1
             or taps * in_channels > MAX_SHIFTED_TAPS.
  'auto'     'shifted' on CPU when it applies, 'lax' elsewhere (GPU/TPU have
             fast native convolutions).
Results equal 'lax' up to float rounding (summation order differs).
"""

import functools
from typing import Any, Callable, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "lax", "shifted")

# taps * in_channels above which the shifted sum (one multiply-add over the
# output per term) stops beating XLA:CPU's conv. Measured, forward + weight
# gradient, 3x3 kernels, 32 output channels: 1 input channel 3.4x faster,
# 3 channels 2.1x, 8 channels 1.3x, 16 channels 1.5x slower.
MAX_SHIFTED_TAPS = 72

_DIMS = ("NHWC", "HWIO", "NHWC")
Padding = Union[str, Sequence[Tuple[int, int]]]


def auto_impl(backend: str = None) -> str:
  """The impl that 'auto' picks on `backend` for a layer the fast path covers."""
  backend = backend or jax.default_backend()
  return "shifted" if backend == "cpu" else "lax"


def conv2d(x, kernel, strides: Sequence[int] = (1, 1), padding: Padding = "SAME", bias=None, *,
           impl: str = "auto"):
  """NHWC x (or HWC) conv HWIO kernel (+ bias); equal to what flax nn.Conv computes."""
  if impl not in IMPLS:
    raise ValueError(f"conv impl must be one of {IMPLS}, got {impl!r}")
  strides = tuple(int(s) for s in strides)
  unbatched = x.ndim == 3
  if unbatched:
    x = x[None]
  kh, kw, cin, _ = kernel.shape
  if x.shape[-1] != cin:
    raise ValueError(f"input has {x.shape[-1]} channels, kernel expects {cin}")
  impl = auto_impl() if impl == "auto" else impl
  if impl == "shifted" and (strides != (1, 1) or kh * kw * cin > MAX_SHIFTED_TAPS):
    impl = "lax"
  if impl == "lax":
    y = lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMS)
    if bias is not None:
      y = y + bias
  else:
    pads = _pads(x.shape[1:3], (kh, kw), padding)
    if bias is None:
      bias = jnp.zeros((kernel.shape[-1],), kernel.dtype)
    y = _shifted_conv(x, kernel, bias, pads)
  return y[0] if unbatched else y


def _pads(spatial, window, padding):
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(spatial, window, (1, 1), padding))
  pads = tuple(tuple(int(v) for v in p) for p in padding)
  if len(pads) != 2 or any(len(p) != 2 for p in pads):
    raise ValueError(f"padding {padding} must give one (low, high) pair per spatial dim")
  return pads


def _acc_dtype(dtype):
  # Half-precision inputs accumulate in f32, as XLA's conv kernels do.
  return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype


def _taps(x, window, pads):
  """Yields (i, j, view) with view[n, h, w, c] = padded_x[n, h + i, w + j, c]."""
  kh, kw = window
  (plo, phi), (qlo, qhi) = pads
  xp = lax.pad(x, jnp.zeros((), x.dtype),
               ((0, 0, 0), (plo, phi, 0), (qlo, qhi, 0), (0, 0, 0)))
  ho, wo = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
  for i in range(kh):
    for j in range(kw):
      yield i, j, xp[:, i:i + ho, j:j + wo, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _shifted_conv(x, kernel, bias, pads):
  return _shifted_fwd_value(x, kernel, bias, pads)


def _shifted_fwd_value(x, kernel, bias, pads):
  dtype = jnp.result_type(x, kernel, bias)
  acc = _acc_dtype(dtype)
  k = kernel.astype(acc)
  y = bias.astype(acc)
  for i, j, view in _taps(x, kernel.shape[:2], pads):
    view = view.astype(acc)
    for c in range(kernel.shape[2]):
      y = y + view[..., c:c + 1] * k[i, j, c]
  return y.astype(dtype)


def _shifted_fwd(x, kernel, bias, pads):
  return _shifted_fwd_value(x, kernel, bias, pads), (x, kernel, bias)


def _shifted_bwd(pads, res, g):
  x, kernel, bias = res
  kh, kw, cin, cout = kernel.shape
  acc = _acc_dtype(g.dtype)
  # Patches as (taps*cin + 1, N*Ho*Wo), the last row all ones: one
  # (small x big) @ (big x cout) product gives the kernel and the bias
  # gradients in a single pass over g, which is the largest tensor here.
  rows = [view[..., c].reshape(-1) for _, _, view in _taps(x, (kh, kw), pads) for c in range(cin)]
  rows.append(jnp.ones_like(rows[0]))
  patches_t = jnp.stack(rows)
  dkb = lax.dot_general(patches_t, g.reshape(-1, cout), (((1,), (0,)), ((), ())),
                        preferred_element_type=acc)
  dk = dkb[:-1].reshape(kh, kw, cin, cout).astype(kernel.dtype)
  db = dkb[-1].astype(bias.dtype)
  _, x_vjp = jax.vjp(
      lambda x_: lax.conv_general_dilated(x_, kernel, (1, 1), pads, dimension_numbers=_DIMS), x)
  (dx,) = x_vjp(g)
  return dx, dk, db


_shifted_conv.defvjp(_shifted_fwd, _shifted_bwd)


class Conv(nn.Module):
  """`flax.linen.Conv` restricted to 2-D, no dilation, no groups, with `impl`.

  Parameter names, shapes and default initializers match nn.Conv, so the two
  are interchangeable in a model and its checkpoints.
  """

  features: int
  kernel_size: Sequence[int]
  strides: Union[int, Sequence[int]] = 1
  padding: Padding = "SAME"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv2d(x, kernel, strides, self.padding, bias, impl=self.impl)
