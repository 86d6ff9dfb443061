"""The attention kernels agree with softmax(QK^T / sqrt(d) + causal mask) V, forward and backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from lepton_jax.errors import UserError
from lepton_jax.models import attention
from lepton_jax.parallel import mesh as mesh_lib

# Tiny programs: compile time is what counts (see conftest).
FAST = {"xla_backend_optimization_level": 0}


def reference(q, k, v, mask=None):
  """Plain attention in float32 at the highest matmul precision, key/value heads repeated."""
  group = q.shape[2] // k.shape[2]
  k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
  hi = jax.lax.Precision.HIGHEST
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=hi) / np.sqrt(q.shape[-1])
  if mask is None:
    t = q.shape[1]
    mask = np.tril(np.ones((t, t), bool))[None, None]
  logits = jnp.where(mask, logits, -1e30)
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v, precision=hi)


def qkv(t, heads=4, kv_heads=2, head_dim=8, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  shapes = [(batch, t, heads, head_dim), (batch, t, kv_heads, head_dim), (batch, t, kv_heads, head_dim)]
  return [jnp.asarray(rng.normal(size=s), jnp.float32) for s in shapes]


def value_and_grads(fn, q, k, v):
  """fn(q, k, v) and the gradients of a fixed random projection of it: the backward pass
  sees a cotangent that differs per element."""
  w = jnp.asarray(np.random.default_rng(9).normal(size=q.shape), jnp.float32)
  loss = lambda q, k, v: jnp.sum(fn(q, k, v) * w)  # noqa: E731
  return fn(q, k, v), jax.grad(loss, argnums=(0, 1, 2))(q, k, v)


def assert_matches_reference(fn, q, k, v, atol):
  both = lambda q, k, v: (value_and_grads(fn, q, k, v), value_and_grads(reference, q, k, v))  # noqa: E731
  (out, grads), (ref_out, ref_grads) = jax.jit(both, compiler_options=FAST)(q, k, v)
  np.testing.assert_allclose(out, ref_out, atol=atol)
  for name, g, r in zip("qkv", grads, ref_grads):
    np.testing.assert_allclose(g, r, atol=atol, err_msg=f"d{name}")


@pytest.mark.parametrize("t, heads, kv_heads", [(7, 4, 4), (13, 4, 2)])
def test_xla_kernel_matches_reference(t, heads, kv_heads):
  q, k, v = qkv(t, heads, kv_heads)
  assert_matches_reference(lambda q, k, v: attention.causal_attention(q, k, v, "xla"), q, k, v, 1e-5)


def test_pallas_splash_kernel_interpreted_matches_reference():
  # An odd length: the kernel pads to 128 at the end, which causality must hide.
  q, k, v = qkv(13, 4, 2)
  fn = lambda q, k, v: attention.causal_attention(q, k, v, "pallas", interpret=True)  # noqa: E731
  assert_matches_reference(fn, q, k, v, 1e-5)


def test_pallas_kernel_under_a_mesh_runs_per_shard():
  devices = jax.devices()[:8]
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "model": 2}, devices)
  q, k, v = qkv(13, 4, 2, batch=4)
  with jax.set_mesh(mesh):
    spec = NamedSharding(mesh, P(mesh_lib.BATCH_AXES, None, "model", None))
    fn = jax.jit(lambda q, k, v: attention.causal_attention(q, k, v, "pallas", interpret=True),
                 in_shardings=(spec, spec, spec), compiler_options=FAST)
    assert "manual_computation" in fn.lower(q, k, v).as_text()  # a shard_map, not a gather
    out = fn(q, k, v)
  np.testing.assert_allclose(out, reference(q, k, v), atol=1e-5)


def test_bfloat16_inputs_agree_within_bfloat16_tolerance():
  q, k, v = (x.astype(jnp.bfloat16) for x in qkv(13))
  out = jax.jit(lambda q, k, v: attention.causal_attention(q, k, v, "xla"), compiler_options=FAST)(q, k, v)
  assert out.dtype == jnp.bfloat16
  ref = reference(*(x.astype(jnp.float32) for x in (q, k, v)))
  np.testing.assert_allclose(out.astype(jnp.float32), ref, atol=3e-2)


def test_masked_attention_ignores_masked_keys_and_never_gives_nan():
  q, k, v = qkv(6)
  visible = np.tril(np.ones((6, 6), bool))
  visible[:, :2] = False  # two padding keys: every query ignores them
  mask = jnp.asarray(np.broadcast_to(visible, (2, 1, 6, 6)))
  changed = v.at[:, :2].set(100.0)
  run = lambda q, k, v, changed: (  # noqa: E731
      attention.masked_attention(q, k, v, mask), reference(q, k, v, mask),
      attention.masked_attention(q, k, changed, mask))
  out, ref, out_changed = jax.jit(run, compiler_options=FAST)(q, k, v, changed)
  np.testing.assert_allclose(out[:, 2:], ref[:, 2:], atol=1e-5)
  np.testing.assert_allclose(out_changed[:, 2:], out[:, 2:], atol=1e-5)
  # Queries 0 and 1 see no key at all: a finite average, not NaN.
  assert np.isfinite(np.asarray(out)).all()


def test_explicit_attention_matches_the_kernels_and_applies_the_transform():
  q, k, v = qkv(7)
  run = lambda q, k, v: (attention.explicit_attention(q, k, v, None),  # noqa: E731
                         attention.causal_attention(q, k, v, "xla"),
                         attention.explicit_attention(q, k, v, None, lambda p: p * 0))
  explicit, kernel, zeroed = jax.jit(run, compiler_options=FAST)(q, k, v)
  np.testing.assert_allclose(explicit, kernel, atol=1e-5)
  np.testing.assert_array_equal(zeroed, np.zeros_like(zeroed))


def test_choose_on_cpu():
  assert jax.devices()[0].platform == "cpu"
  assert attention.choose("auto", jnp.bfloat16, 64) == "xla"
  assert attention.choose("xla", jnp.float32, 64) == "xla"
  with pytest.raises(UserError, match="^attention='cudnn' cannot run: it needs an NVIDIA GPU"):
    attention.choose("cudnn", jnp.bfloat16, 64)
  with pytest.raises(UserError, match="attention='pallas' is the TPU splash kernel"):
    attention.choose("pallas", jnp.float32, 64)
  with pytest.raises(UserError, match="^attention must be one of 'auto', 'xla', 'cudnn', 'pallas', not"):
    attention.choose("flash", jnp.float32, 64)


def test_cudnn_fit_rules():
  class Gpu:
    platform, compute_capability = "gpu", "8.0"

  class Hopper(Gpu):
    compute_capability = "9.0"

  assert attention._cudnn_misfit(Gpu(), jnp.bfloat16, 64) == ""
  assert "bfloat16 or float16" in attention._cudnn_misfit(Gpu(), jnp.float32, 64)
  assert "at most 128" in attention._cudnn_misfit(Gpu(), jnp.float16, 256)
  assert attention._cudnn_misfit(Hopper(), jnp.float16, 256) == ""
  assert "multiple of 8" in attention._cudnn_misfit(Hopper(), jnp.bfloat16, 36)
