"""Causal self-attention kernels behind one setting, `attention`:

  'xla'     jax.nn.dot_product_attention's XLA path: f32 logits (B, heads, T, T); any backend.
  'cudnn'   cuDNN flash attention (NVIDIA GPUs; bfloat16/float16 compute, head dim a multiple
            of 8, at most 128, 256 from Hopper on).
  'pallas'  the Pallas splash-attention kernel (TPU); sequences are padded to a multiple of 128.
  'auto'    cuDNN where it fits, else splash on TPU, else XLA (always XLA on CPU).

Inputs are (B, T, heads, head_dim) queries and (B, T, kv_heads, head_dim) keys and values:
fewer key/value heads (a divisor of heads) is grouped-query attention.
"""

import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from lepton_jax.errors import UserError
from lepton_jax.parallel.mesh import BATCH_AXES

IMPLEMENTATIONS = ("auto", "xla", "cudnn", "pallas")
# Splash attention tiles the sequence in blocks of at least one TPU lane width.
_SPLASH_MIN_BLOCK = 128


def _prefix(owner: str) -> str:
  return f"{owner}: " if owner else ""


def check_choice(field: str, value, choices, owner: str = "") -> None:
  """UserError unless `value` is one of `choices` (a field of `owner`, named for the message)."""
  if value not in choices:
    raise UserError(f"{_prefix(owner)}{field} must be one of {', '.join(map(repr, choices))}, "
                    f"not {value!r}")


def _cudnn_misfit(device, dtype, head_dim: int) -> str:
  """Why cuDNN flash attention cannot run here ('' when it can)."""
  capability = getattr(device, "compute_capability", None)
  if device.platform != "gpu" or capability is None:
    return f"it needs an NVIDIA GPU and this backend is {device.platform}"
  if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    return f"it computes in bfloat16 or float16, not {jnp.dtype(dtype).name} (set config.dtype)"
  hopper = tuple(int(x) for x in str(capability).split(".")) >= (9, 0)
  limit = 256 if hopper else 128
  if head_dim % 8 or head_dim > limit:
    return f"the head dimension must be a multiple of 8 and at most {limit}, not {head_dim}"
  return ""


def _splash_module():
  """The Pallas TPU splash-attention package, or None where this jax lacks it."""
  try:
    from jax.experimental.pallas.ops.tpu import splash_attention
  except ImportError:
    return None
  return splash_attention


def _mesh_context():
  """The mesh set around the computation (jax.set_mesh), or None."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not set(BATCH_AXES) <= set(mesh.axis_names):
    return None
  return mesh


def choose(implementation: str, dtype, head_dim: int, seq_len: int = _SPLASH_MIN_BLOCK,
           owner: str = "") -> str:
  """The kernel ('xla', 'cudnn' or 'pallas') that `implementation` means on this backend
  for `seq_len` tokens of `head_dim` per head in `dtype`.

  'auto' never fails: it takes cuDNN or splash only where they fit (splash from 128
  tokens on: shorter ones would be mostly padding), else XLA. An explicit 'cudnn' or
  'pallas' that cannot run here is a UserError.
  """
  check_choice("attention", implementation, IMPLEMENTATIONS, owner)
  device = jax.devices()[0]
  if implementation == "auto":
    if not _cudnn_misfit(device, dtype, head_dim):
      return "cudnn"
    # Without a mesh in context the kernel cannot be placed on sharded inputs
    # (Mosaic calls are not partitioned automatically), so several devices need one.
    if (device.platform == "tpu" and seq_len >= _SPLASH_MIN_BLOCK and _splash_module() is not None
        and (jax.device_count() == 1 or _mesh_context() is not None)):
      return "pallas"
    return "xla"
  if implementation == "cudnn":
    why = _cudnn_misfit(device, dtype, head_dim)
    if why:
      raise UserError(f"{_prefix(owner)}attention='cudnn' cannot run: {why}; use attention='auto' or 'xla'")
  if implementation == "pallas":
    if device.platform != "tpu" or _splash_module() is None:
      raise UserError(f"{_prefix(owner)}attention='pallas' is the TPU splash kernel and this backend is "
                      f"{device.platform}; use attention='auto' or 'xla'")
  return implementation


def causal_attention(q, k, v, implementation: str = "xla", *, interpret: bool = False):
  """softmax(q k^T / sqrt(head_dim), causal) v with the kernel `implementation`
  ('xla', 'cudnn' or 'pallas'; see `choose`). `interpret` runs the Pallas kernel
  in the Pallas interpreter (any backend: for tests)."""
  if implementation == "pallas":
    return splash_causal_attention(q, k, v, interpret=interpret)
  if implementation not in ("xla", "cudnn"):
    raise ValueError(f"causal_attention: unknown kernel {implementation!r}; call choose() first")
  return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=implementation)


def masked_attention(q, k, v, mask):
  """Attention of q (B, S, heads, D) over k, v (B, L, kv_heads, D) where mask (B, 1, S, L)
  is True; a query that sees no key gets a uniform average (finite, never NaN)."""
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


def explicit_attention(q, k, v, mask, probs_transform=None):
  """Attention written out (f32 logits and softmax), so that `probs_transform` (dropout)
  can act on the probabilities; mask (B, 1, S, L) or None for causal."""
  heads, kv_heads = q.shape[2], k.shape[2]
  if kv_heads != heads:
    k = jnp.repeat(k, heads // kv_heads, axis=2)
    v = jnp.repeat(v, heads // kv_heads, axis=2)
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  logits = logits / math.sqrt(q.shape[-1])
  if mask is None:
    mask = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))[None, None]
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  if probs_transform is not None:
    probs = probs_transform(probs)
  return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def _splash_blocks(splash, seq_len: int):
  block = next(b for b in (512, 256, _SPLASH_MIN_BLOCK) if seq_len % b == 0)
  return splash.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block,
                           block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
                           block_q_dq=block, block_kv_dq=block)


def _splash_specs(mesh, batch: int, heads: int, kv_heads: int):
  """shard_map specs of (B, heads, T, D): batch over the data axes, heads over 'model',
  each only where it divides."""
  data = math.prod(mesh.shape[a] for a in BATCH_AXES)
  model = mesh.shape.get("model", 1)
  batch_axis = BATCH_AXES if batch % data == 0 else None
  head_axis = "model" if model > 1 and heads % model == 0 and kv_heads % model == 0 else None
  return P(batch_axis, head_axis, None, None)


def splash_causal_attention(q, k, v, *, interpret: bool = False):
  """Causal attention by the Pallas splash kernel. The sequence is padded at the end to a
  multiple of 128 (causality keeps the padding out of every real query's view), and under
  a mesh context (jax.set_mesh) the kernel runs per shard, batch over the data axes."""
  splash = _splash_module()
  if splash is None:
    raise UserError("attention='pallas': this jax has no Pallas TPU splash kernel; "
                    "use attention='auto' or 'xla'")
  b, t, heads, head_dim = q.shape
  padded = -(-t // _SPLASH_MIN_BLOCK) * _SPLASH_MIN_BLOCK
  pad = [(0, 0), (0, padded - t), (0, 0), (0, 0)]
  # The kernel takes (heads, T, D) per example and applies no softmax scale of its own.
  q, k, v = (jnp.pad(x, pad).transpose(0, 2, 1, 3) for x in (q * (head_dim ** -0.5), k, v))
  blocks = _splash_blocks(splash, padded)

  def per_shard(q, k, v):
    mask = splash.MultiHeadMask([splash.CausalMask((padded, padded))] * q.shape[1])
    kernel = splash.make_splash_mha(mask, block_sizes=blocks, head_shards=1, q_seq_shards=1,
                                    interpret=interpret)
    return jax.vmap(kernel)(q, k, v)

  mesh = _mesh_context()
  if mesh is not None:
    spec = _splash_specs(mesh, b, heads, k.shape[1])
    per_shard = jax.shard_map(per_shard, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec,
                              check_vma=False)
  out = per_shard(q, k, v)
  return out.transpose(0, 2, 1, 3)[:, :t]
