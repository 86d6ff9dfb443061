"""lepton_jax.flops: counts from the jaxpr against hand counts."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lepton_jax import flops
from lepton_jax.models import transformer_lm


def _abstract_init(module, x):
  return jax.eval_shape(module.init, jax.random.PRNGKey(0), x)


def test_dense_is_two_flops_per_multiply_add():
  batch, fan_in, fan_out = 32, 64, 48
  dense = nn.Dense(fan_out)
  x = jax.ShapeDtypeStruct((batch, fan_in), jnp.float32)
  assert flops.forward_flops(dense.apply, _abstract_init(dense, x), x) == 2 * batch * fan_in * fan_out


@pytest.mark.parametrize("padding,out_size", [("VALID", 14), ("SAME", 16)])
def test_conv_counts_every_kernel_tap(padding, out_size):
  batch, size, cin, cout, k = 4, 16, 3, 8, 3
  conv = nn.Conv(cout, (k, k), padding=padding)
  x = jax.ShapeDtypeStruct((batch, size, size, cin), jnp.float32)
  expected = 2 * batch * out_size * out_size * k * k * cin * cout
  assert flops.forward_flops(conv.apply, _abstract_init(conv, x), x) == expected


def test_grouped_conv_counts_the_input_features_of_one_group():
  conv = nn.Conv(8, (3, 3), padding="VALID", feature_group_count=4)
  x = jax.ShapeDtypeStruct((2, 10, 10, 8), jnp.float32)
  expected = 2 * 2 * 8 * 8 * 3 * 3 * (8 // 4) * 8
  assert flops.forward_flops(conv.apply, _abstract_init(conv, x), x) == expected


def test_causal_attention_counts_the_full_score_matrix():
  batch, seq, width, heads = 2, 64, 32, 4
  attn = transformer_lm.CausalSelfAttention(num_heads=heads, num_kv_heads=heads, attention="xla")
  x = jax.ShapeDtypeStruct((batch, seq, width), jnp.float32)
  positions = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
  projections = 4 * 2 * batch * seq * width * width  # q, k, v, out
  scores = flops.attention_flops(batch, heads, seq, seq, width // heads)
  assert scores == 4 * batch * seq * seq * width  # QK^T and PV over all T x T scores
  variables = jax.eval_shape(attn.init, jax.random.PRNGKey(0), x, positions)
  forward = lambda v, x, p: attn.apply(v, x, p)[0]  # noqa: E731  (the output, not the cache)
  assert flops.forward_flops(forward, variables, x, positions) == projections + scores


def test_transformer_train_step_matches_6n_plus_12ltd():
  batch, seq, width, depth = 4, 128, 64, 2
  model = transformer_lm.TransformerLM(vocab_size=256, width=width, depth=depth, num_heads=4,
                                       mlp_dim=4 * width, max_len=seq, positions="rotary")
  tokens = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
  variables = _abstract_init(model, tokens)
  num_params = sum(p.size for p in jax.tree.leaves(variables))
  counted = flops.train_step_flops(model.apply, variables, tokens)
  estimate = flops.transformer_train_flops(num_params, depth, seq, width, batch * seq)
  assert counted == pytest.approx(estimate, rel=0.03)


def test_scan_cond_and_nested_jits():
  w = jax.ShapeDtypeStruct((8, 8), jnp.float32)
  x = jax.ShapeDtypeStruct((4, 8), jnp.float32)
  one = 2 * 4 * 8 * 8

  def fn(x, w):
    x, _ = jax.lax.scan(lambda c, _: (jax.jit(jnp.matmul)(c, w), None), x, None, length=5)
    return jax.lax.cond(x.sum() > 0, lambda c: c @ w @ w, lambda c: c, x)

  assert flops.forward_flops(fn, x, w) == 5 * one + 2 * one


def test_gradient_of_a_matmul_is_twice_its_forward():
  """The 3x convention holds exactly where the backward pass is two matmuls per matmul."""
  x = jax.ShapeDtypeStruct((16, 32), jnp.float32)
  w = jax.ShapeDtypeStruct((32, 8), jnp.float32)
  forward = flops.forward_flops(jnp.matmul, x, w)
  both = flops.forward_flops(jax.grad(lambda x, w: jnp.sum(x @ w), argnums=(0, 1)), x, w)
  assert both == 3 * forward


def test_opaque_kernels_are_listed_not_counted():
  from jax.experimental import pallas as pl

  def kernel(x_ref, o_ref):
    o_ref[...] = x_ref[...] @ x_ref[...]

  def fn(x):
    y = pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype), interpret=True)(x)
    return y @ x

  result = flops.count(fn, jax.ShapeDtypeStruct((8, 8), jnp.float32))
  assert result.flops == 2 * 8 * 8 * 8  # only the matmul outside the kernel
  assert result.opaque == {"pallas_call": 1}


def test_agrees_with_xla_where_xla_sees_everything():
  """On the CPU backend the compiled cost analysis sees each matmul: the two counts agree."""
  x = jax.ShapeDtypeStruct((64, 128), jnp.float32)
  w = jax.ShapeDtypeStruct((128, 128), jnp.float32)
  fn = lambda x, w: (x @ w) @ w  # noqa: E731
  compiled = jax.jit(fn).lower(x, w).compile().cost_analysis()
  assert flops.forward_flops(fn, x, w) == pytest.approx(compiled["flops"], rel=0.01)


def test_with_xla_attention_clones_only_models_that_choose_an_attention():
  class Choosy(nn.Module):
    attention: str = "auto"

    def __call__(self, x):
      return x

  assert flops.with_xla_attention(Choosy(attention="cudnn")).attention == "xla"
  dense = nn.Dense(3)
  assert flops.with_xla_attention(dense) is dense


def test_a_shard_map_body_counts_once_per_shard():
  from jax.sharding import NamedSharding, PartitionSpec as P
  mesh = jax.make_mesh((4,), ("d",), devices=jax.devices()[:4])
  fn = jax.shard_map(lambda x, w: x @ w, mesh=mesh, in_specs=(P("d"), P()), out_specs=P("d"))
  x = jax.ShapeDtypeStruct((16, 32), jnp.float32, sharding=NamedSharding(mesh, P("d")))
  w = jax.ShapeDtypeStruct((32, 8), jnp.float32, sharding=NamedSharding(mesh, P()))
  assert flops.forward_flops(fn, x, w) == 2 * 16 * 32 * 8  # 4 shards of 4 rows each
