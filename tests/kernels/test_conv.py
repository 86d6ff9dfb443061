"""lepton_jax.kernels.conv against flax.linen.Conv / lax.conv_general_dilated."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lepton_jax.kernels import conv


def _normal(shape, dtype=np.float32, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), dtype)


def _outputs_and_grads(modules, x, kernel_shape):
  """For each module (same params): output, d/dparams and d/dx of sum(out * cot)."""
  params = {"params": {"kernel": _normal(kernel_shape, x.dtype, seed=1),
                       "bias": _normal(kernel_shape[-1:], x.dtype, seed=3)}}
  cot = _normal(jax.eval_shape(modules[0].apply, params, x).shape, x.dtype, seed=2)

  def f(params, x):
    out = []
    for m in modules:
      y, vjp = jax.vjp(lambda p, x, m=m: m.apply(p, x), params, x)
      out.append((y, vjp(cot)))
    return out
  return jax.jit(f)(params, x)


@pytest.mark.parametrize("shape,kernel,padding", [
    ((2, 9, 7, 1), (3, 3), "SAME"),
    ((2, 9, 7, 3), (3, 2), "VALID"),
    ((6, 6, 2), (2, 3), ((1, 2), (0, 1))),  # no batch dim
])
def test_shifted_matches_flax(shape, kernel, padding):
  x = _normal(shape)
  (ref_y, ref_g), (y, g) = _outputs_and_grads(
      [nn.Conv(5, kernel, padding=padding), conv.Conv(5, kernel, padding=padding, impl="shifted")],
      x, kernel + (shape[-1], 5))
  np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref_g)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_same_parameters_as_flax():
  x = jnp.zeros((1, 8, 8, 3))
  key = jax.random.key(0, impl="rbg")
  ref = jax.eval_shape(nn.Conv(4, (3, 3)).init, key, x)
  ours = jax.eval_shape(conv.Conv(4, (3, 3)).init, key, x)
  assert jax.tree.map(lambda a: (a.shape, a.dtype), ours) == jax.tree.map(
      lambda a: (a.shape, a.dtype), ref)


def test_bf16():
  x = _normal((2, 8, 8, 1), jnp.bfloat16)
  (ref_y, ref_g), (y, g) = _outputs_and_grads(
      [nn.Conv(4, (3, 3), dtype=jnp.bfloat16),
       conv.Conv(4, (3, 3), dtype=jnp.bfloat16, impl="shifted")], x, (3, 3, 1, 4))
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(y.astype(np.float32), ref_y.astype(np.float32), rtol=2e-2, atol=2e-2)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref_g)):
    assert a.dtype == b.dtype
    np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=5e-2, atol=5e-2)


def test_fallbacks_and_auto():
  assert conv.auto_impl("cpu") == "shifted"
  assert conv.auto_impl("gpu") == conv.auto_impl("tpu") == "lax"
  k1 = _normal((3, 3, 1, 4))
  k16 = _normal((3, 3, 16, 4))
  uses_lax = lambda fn, *a: "conv_general_dilated" in str(jax.make_jaxpr(fn)(*a))
  x1, x16 = _normal((1, 6, 6, 1)), _normal((1, 6, 6, 16))
  assert uses_lax(lambda x: conv.conv2d(x, k1, impl="auto"), x1) == (conv.auto_impl() == "lax")
  # 144 taps * channels > MAX_SHIFTED_TAPS, and strides 2: plain conv.
  assert uses_lax(lambda x: conv.conv2d(x, k16, impl="shifted"), x16)
  assert uses_lax(lambda x: conv.conv2d(x, k1, (2, 2), impl="shifted"), x1)
  ref = jax.lax.conv_general_dilated(x1, k1, (2, 2), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(conv.conv2d(x1, k1, (2, 2), impl="shifted"), ref, rtol=1e-6)


def test_vmap():
  k = _normal((3, 3, 1, 4))
  x = _normal((3, 2, 6, 6, 1))
  ref = jax.vmap(lambda x: conv.conv2d(x, k, impl="lax"))(x)
  f = lambda k, x: conv.conv2d(x, k, impl="shifted")
  np.testing.assert_allclose(jax.jit(jax.vmap(f, (None, 0)))(k, x), ref, rtol=1e-5, atol=1e-5)
  loss = lambda impl: (lambda k: (jax.vmap(lambda x: conv.conv2d(x, k, impl=impl))(x) ** 2).sum())
  np.testing.assert_allclose(jax.jit(jax.grad(loss("shifted")))(k), jax.grad(loss("lax"))(k),
                             rtol=1e-5, atol=1e-4)


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match="impl"):
    conv.conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 2)), impl="fast")
  with pytest.raises(ValueError, match="channels"):
    conv.conv2d(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 1, 2)))
