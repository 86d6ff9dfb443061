"""Llama-style causal language model: the `transformer_lm` implementation with Llama's design."""

from lepton_jax import registry
from lepton_jax.models.transformer_lm import TransformerLM


@registry.register("model", "llama")
class Llama(TransformerLM):
  """Llama-style causal LM: int32 (B, T) tokens -> (B, T, vocab_size) logits (compute dtype).

  `transformer_lm` with Llama's defaults: RMSNorm, SwiGLU MLP (gate, up, down), rotary
  positions (base `rope_base`), grouped-query attention (`num_kv_heads` key/value heads;
  0 = num_heads), no biases, an output layer of its own. Every field of transformer_lm
  applies (attention kernel, scan_layers, remat, dtypes).

  Parameters (the `params` collection, vocab_size=256):
    default (width 256, depth 4, 4 heads, 2 kv heads, mlp 768): 3,279,104
  In general: 2*vocab*width (untied; vocab*width tied) + width (final norm)
  + depth * (2*width^2 + 2*width*kv_width + 3*width*mlp_dim + 2*width),
  kv_width = width * num_kv_heads / num_heads.
  """

  num_kv_heads: int = 2
  mlp_dim: int = 768
  positions: str = "rotary"
  norm: str = "rmsnorm"
  mlp: str = "swiglu"
  use_bias: bool = False
  tie_embeddings: bool = False

  kind = "llama"
