import jax
import jax.numpy as jnp
import pytest

from lepton_jax import registry
from lepton_jax.models.llama import Llama
from lepton_jax.models.transformer_lm import TransformerLM


def param_shapes(model):
  x = jnp.zeros((1, 8), jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]


def test_registered_with_llama_defaults():
  assert registry.get("model", "llama") is Llama
  model = Llama()
  assert (model.norm, model.mlp, model.positions, model.use_bias, model.tie_embeddings) == (
      "rmsnorm", "swiglu", "rotary", False, False)
  assert issubclass(Llama, TransformerLM) and model.supports_decode


def test_parameter_count_matches_docstring_and_formula(param_count):
  v, w, d, m, heads, kv = 256, 256, 4, 768, 4, 2
  kv_width = w * kv // heads
  formula = 2 * v * w + w + d * (2 * w * w + 2 * w * kv_width + 3 * w * m + 2 * w)
  count = param_count(Llama(), jnp.zeros((1, 8), jnp.int32))
  assert count == formula == 3_279_104
  assert f"{count:,}" in Llama.__doc__


def test_no_biases_rmsnorm_swiglu_untied_no_position_table():
  params = param_shapes(Llama(width=32, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=48))
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  assert not [p for p in paths if "bias" in p]
  assert "pos_embed" not in params and params["lm_head"]["kernel"].shape == (32, 256)
  assert set(params["blocks"]["mlp"]) == {"gate", "up", "down"}
  assert set(params["blocks"]["ln1"]) == {"scale"}  # RMSNorm: a scale, no bias


@pytest.mark.parametrize("num_kv_heads, expected", [(2, 2), (1, 1), (0, 4), (4, 4)])
def test_grouped_query_attention_heads(num_kv_heads, expected):
  attn = param_shapes(Llama(width=32, depth=2, num_heads=4, num_kv_heads=num_kv_heads, mlp_dim=48))
  attn = attn["blocks"]["attn"]
  assert attn["query"]["kernel"].shape == (2, 32, 4, 8)
  assert attn["key"]["kernel"].shape == attn["value"]["kernel"].shape == (2, 32, expected, 8)
  assert attn["out"]["kernel"].shape == (2, 4, 8, 32)


def test_tied_llama_has_no_output_layer():
  assert "lm_head" not in param_shapes(Llama(width=32, depth=1, num_heads=4, mlp_dim=48,
                                             tie_embeddings=True))
