"""lepton_jax.kernels.pooling against flax.linen's reduce_window pooling.

Each check jits forward and gradient together: XLA:CPU compiles dominate the
run time, so one compile per (impl, case) keeps the file fast.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax.kernels import pooling

# impls with their own code path ('auto' is one of them, tested separately)
IMPLS = ("reduce_window", "reshape", "mask_vjp")

# (shape, window, strides, padding): VALID cropping of odd sizes, SAME and
# explicit padding, no batch dim, two batch dims, 1-D windows. Exactly tiling
# shapes are in the tie, bf16 and vmap tests; overlapping windows (the
# reduce_window fallback) in test_auto_selection.
CASES = [
    ((2, 7, 9, 3), (2, 2), (2, 2), "VALID"),
    ((2, 7, 9, 3), (2, 2), (2, 2), "SAME"),
    ((2, 7, 9, 3), (3, 2), (3, 2), ((1, 1), (0, 2))),
    ((1, 9, 9, 2), (3, 3), (3, 3), "SAME"),
    ((5, 4, 3), (2, 2), (2, 2), "SAME"),
    ((2, 3, 6, 6, 4), (2, 3), (2, 3), "VALID"),
    ((3, 10, 4), (2,), (2,), "VALID"),
]


def _normal(shape, dtype=np.float32, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), dtype)


def _value_and_vjp(fn):
  """jit(x, cot -> (fn(x), vjp of fn at x applied to cot))."""
  def f(x, cot):
    y, vjp = jax.vjp(fn, x)
    return y, vjp(cot)[0]
  return jax.jit(f)


def _values_and_vjps(fns, x, cot):
  """[(fn(x), vjp(cot)) for fn in fns], all in one compile."""
  def f(x, cot):
    out = []
    for fn in fns:
      y, vjp = jax.vjp(fn, x)
      out.append((y, vjp(cot)[0]))
    return out
  return jax.jit(f)(x, cot)


def _window_sums(g, window, padding):
  """Per-window sums of a gradient: all tie conventions must agree on these."""
  return nn.pooling.pool(g.astype(jnp.float32), 0.0, jax.lax.add, window, window, padding)


@pytest.mark.parametrize("shape,window,strides,padding", CASES)
def test_max_pool_matches_flax_without_ties(shape, window, strides, padding):
  x = _normal(shape)  # continuous values: no ties
  ref_shape = nn.max_pool(x, window, strides, padding).shape
  cot = _normal(ref_shape, seed=1)
  fns = [lambda x, impl=impl: pooling.max_pool(x, window, strides, padding, impl=impl)
         for impl in IMPLS]
  (ref_y, ref_g), *outs = _values_and_vjps(
      [lambda x: nn.max_pool(x, window, strides, padding)] + fns, x, cot)
  for impl, (y, g) in zip(IMPLS, outs):
    np.testing.assert_array_equal(y, ref_y, err_msg=impl)
    np.testing.assert_array_equal(g, ref_g, err_msg=impl)


@pytest.mark.parametrize("dtype,shape,padding", [(jnp.float32, (2, 8, 8, 4), "VALID"),
                                                 (jnp.bfloat16, (2, 7, 5, 3), "SAME")])
def test_max_pool_with_ties(dtype, shape, padding):
  # Values in {0, 1, 2}: most windows hold several maxima.
  x = jnp.asarray(np.random.default_rng(0).integers(0, 3, shape), dtype)
  window = (2, 2)
  cot = jnp.ones(nn.max_pool(x, window, window, padding).shape, dtype)
  fns = [lambda x, impl=impl: pooling.max_pool(x, window, window, padding, impl=impl)
         for impl in IMPLS]
  (ref_y, ref_g), *outs = _values_and_vjps(
      [lambda x: nn.max_pool(x, window, window, padding)] + fns, x, cot)
  for impl, (y, g) in zip(IMPLS, outs):
    assert y.dtype == g.dtype == dtype
    np.testing.assert_array_equal(y, ref_y, err_msg=impl)
    if impl == "reshape":  # split among ties: 1/3 is inexact in bf16
      np.testing.assert_allclose(_window_sums(g, window, padding),
                                 _window_sums(ref_g, window, padding), rtol=1e-2)
    else:  # same element as XLA's select-and-scatter
      np.testing.assert_array_equal(g, ref_g, err_msg=impl)


def test_tie_goes_to_first_element_in_window():
  x = jnp.array([[1.0, 3.0], [3.0, 3.0]])[None, :, :, None]
  grads = jax.jit(lambda x: [
      jax.grad(lambda x: pooling.max_pool(x, (2, 2), (2, 2), impl=impl).sum())(x)[0, :, :, 0]
      for impl in ("reduce_window", "mask_vjp", "reshape")])(x)
  np.testing.assert_array_equal(grads[0], [[0.0, 1.0], [0.0, 0.0]])
  np.testing.assert_array_equal(grads[1], [[0.0, 1.0], [0.0, 0.0]])
  np.testing.assert_allclose(grads[2], [[0.0, 1 / 3], [1 / 3, 1 / 3]], rtol=1e-6)


def test_max_pool_bf16_random():
  x = _normal((2, 8, 6, 4), jnp.bfloat16)
  cot = _normal((2, 4, 3, 4), jnp.bfloat16, seed=1)
  ref_y, ref_g = _value_and_vjp(lambda x: nn.max_pool(x, (2, 2), (2, 2)))(x, cot)
  y, g = _value_and_vjp(lambda x: pooling.max_pool(x, (2, 2), (2, 2), impl="mask_vjp"))(x, cot)
  assert y.dtype == g.dtype == jnp.bfloat16
  np.testing.assert_array_equal(y, ref_y)
  np.testing.assert_array_equal(g, ref_g)


def test_vmap():
  x = _normal((3, 2, 6, 6, 2))
  ref_fn = lambda x: nn.max_pool(x, (2, 2), (2, 2))
  fn = lambda x: pooling.max_pool(x, (2, 2), (2, 2), impl="mask_vjp")
  cot = _normal((3, 2, 3, 3, 2), seed=1)
  ref_y, ref_g = _value_and_vjp(jax.vmap(ref_fn))(x, cot)
  y, g = _value_and_vjp(jax.vmap(fn))(x, cot)
  np.testing.assert_array_equal(y, ref_y)
  np.testing.assert_array_equal(g, ref_g)
  # vmap over single (H, W, C) images, the form without a batch dim.
  np.testing.assert_array_equal(jax.jit(jax.vmap(fn))(x[0]), jax.vmap(ref_fn)(x[0]))


@pytest.mark.parametrize("shape,window,strides,padding", CASES[:3])
def test_avg_pool_matches_flax(shape, window, strides, padding):
  x = _normal(shape)
  cot = _normal(nn.avg_pool(x, window, strides, padding).shape, seed=1)
  # 'mask_vjp' is the same code as 'reshape' for avg_pool.
  args = [(cip, impl) for cip in (True, False) for impl in ("flax", "reduce_window", "reshape")]
  fns = [lambda x, cip=cip, impl=impl:
         nn.avg_pool(x, window, strides, padding, cip) if impl == "flax" else
         pooling.avg_pool(x, window, strides, padding, cip, impl=impl) for cip, impl in args]
  outs = dict(zip(args, _values_and_vjps(fns, x, cot)))
  for (cip, impl), (y, g) in outs.items():
    ref_y, ref_g = outs[cip, "flax"]
    np.testing.assert_allclose(y, ref_y, rtol=1e-6, atol=1e-6, err_msg=impl)
    np.testing.assert_allclose(g, ref_g, rtol=1e-6, atol=1e-6, err_msg=impl)


def test_avg_pool_bf16():
  x = _normal((2, 8, 8, 4), jnp.bfloat16)
  y = pooling.avg_pool(x, (2, 2), (2, 2), impl="mask_vjp")
  assert y.dtype == jnp.bfloat16
  # flax sums in bf16; the reshape path may sum more precisely: equal to bf16 rounding.
  exact = nn.avg_pool(x.astype(jnp.float32), (2, 2), (2, 2))
  np.testing.assert_allclose(y.astype(np.float32), exact, atol=1e-2)


def test_auto_selection():
  assert pooling.auto_impl("cpu") == "mask_vjp"
  assert pooling.auto_impl("gpu") == "reduce_window"
  assert pooling.auto_impl("tpu") == "reduce_window"
  assert pooling.auto_impl() == pooling.auto_impl(jax.default_backend())
  x = _normal((2, 4, 4, 1))
  jaxpr = str(jax.make_jaxpr(lambda x: pooling.max_pool(x, (2, 2), (2, 2)))(x))
  assert ("custom_vjp" in jaxpr) == (pooling.auto_impl() == "mask_vjp")
  # Overlapping windows (strides default to 1) cannot be reshaped: fallback.
  jaxpr = str(jax.make_jaxpr(lambda x: pooling.max_pool(x, (3, 3), impl="mask_vjp"))(x))
  assert "reduce_window_max" in jaxpr


def test_integer_input_falls_back():
  x = jnp.asarray(np.random.default_rng(0).integers(-50, 50, (2, 6, 6, 2)), jnp.int32)
  for impl in ("reshape", "mask_vjp"):
    y = pooling.max_pool(x, (2, 2), (2, 2), impl=impl)
    assert y.dtype == jnp.int32
    np.testing.assert_array_equal(y, nn.max_pool(x, (2, 2), (2, 2)))


def test_rejects_bad_arguments():
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match="impl"):
    pooling.max_pool(x, (2, 2), impl="fast")
  with pytest.raises(ValueError, match="strides"):
    pooling.avg_pool(x, (2, 2), (2,))
