"""Model FLOPs that mean the same on every backend: counted from the jaxpr, not from XLA.

XLA's cost analysis of a compiled step counts library calls (cuBLAS and cuDNN
custom calls on GPUs) as zero, and the cost analysis of an unoptimized lowering
is not available on backends reached through the PJRT C API (the CUDA plugin,
TPUs: jax's Lowered.cost_analysis returns None there). So the count here walks
the traced program (the jaxpr, the same on every backend; nothing is compiled)
and adds up its matrix products and convolutions:

  dot_general            2 x (output elements) x (contracted elements)
  conv_general_dilated   2 x (output elements) x (kernel elements per output feature),
                         padding taps included (the usual hand count; XLA's own
                         count leaves out the taps that fall on padding)

Elementwise ops, reductions, softmax and normalization are not counted, as in
the 6N + 12LTd convention, where matrix products stand for the model's work.

Conventions:
  * train step = 3 x forward (the backward pass costs twice the forward); the
    recomputation of rematerialized activations is not counted, so FLOPs / time
    / peak is MFU (model FLOPs utilization), not HFU.
  * attention: QK^T and PV over the full T x T scores, causal or not, as an
    XLA attention computes them and as 12LTd (= 3 x 4LTd) assumes.
  * `scan` bodies count `length` times; a `while` body once (its trip count is
    not known before it runs); of a `cond`, the costliest branch; a
    `shard_map` body once per shard of its manual mesh axes.

Kernels that are opaque to any count (Pallas calls, cuDNN fused attention, FFI
calls) add nothing; `count()` lists them in `opaque`. Count such a model with
its XLA implementation (e.g. a clone with attention='xla'), or add
`attention_flops()` for the attention it hides.
"""

import dataclasses
import math
from typing import Any, Callable

import jax

# Multiply the forward count by this for a training step (forward + backward).
TRAIN_FLOPS_PER_FORWARD = 3

# Primitives that hide their arithmetic from the jaxpr: library or hand-written kernels.
_OPAQUE_PRIMITIVES = ("pallas_call", "ffi_call", "cudnn_fusion", "scaled_matmul",
                      "tpu_custom_call")


@dataclasses.dataclass
class FlopCount:
  """FLOPs of one call, and the primitives whose FLOPs could not be counted."""

  flops: float = 0.0
  opaque: dict[str, int] = dataclasses.field(default_factory=dict)

  def add(self, other: "FlopCount", times: float = 1.0) -> None:
    self.flops += times * other.flops
    for name, n in other.opaque.items():
      self.opaque[name] = self.opaque.get(name, 0) + n


def _size(shape) -> int:
  return math.prod(int(d) for d in shape)


def _dot_general_flops(eqn) -> float:
  (lhs_contract, _), _ = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  contracted = _size(lhs[d] for d in lhs_contract)
  return 2.0 * _size(eqn.outvars[0].aval.shape) * contracted


def _conv_flops(eqn) -> float:
  kernel = eqn.invars[1].aval.shape
  out_features = kernel[eqn.params["dimension_numbers"].rhs_spec[0]]
  per_output = _size(kernel) // out_features  # kernel taps x input features of one group
  return 2.0 * _size(eqn.outvars[0].aval.shape) * per_output


def _is_opaque(name: str) -> bool:
  return name in _OPAQUE_PRIMITIVES or "attention" in name


def _sub_jaxprs(value) -> list:
  """The jaxprs held by one equation parameter (a jaxpr, or a tuple of them)."""
  if hasattr(value, "eqns"):
    return [value]
  if isinstance(value, (tuple, list)):
    return [v for v in value if hasattr(v, "eqns")]
  return []


def _repeats(name: str, params: dict) -> float:
  """How many times one equation runs its nested jaxprs, over the whole program."""
  if name == "scan":
    return float(params["length"])
  if name == "shard_map":
    mesh = params["mesh"]
    axes = params.get("newly_manual_axes") or params.get("manual_axes") or mesh.axis_names
    return float(math.prod(mesh.shape[a] for a in axes))
  return 1.0


def count_jaxpr(jaxpr) -> FlopCount:
  """The FlopCount of a (closed) jaxpr, nested jaxprs included."""
  total = FlopCount()
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total.flops += _dot_general_flops(eqn)
    elif name == "conv_general_dilated":
      total.flops += _conv_flops(eqn)
    elif _is_opaque(name):
      total.opaque[name] = total.opaque.get(name, 0) + 1
    elif name == "cond":
      branches = [count_jaxpr(b) for b in eqn.params["branches"]]
      total.add(max(branches, key=lambda c: c.flops))
    else:
      times = _repeats(name, eqn.params)
      for value in eqn.params.values():
        for sub in _sub_jaxprs(value):
          total.add(count_jaxpr(sub), times)
  return total


def count(fn: Callable, *args: Any, **kwargs: Any) -> FlopCount:
  """The FlopCount of one call `fn(*args, **kwargs)`; args may be arrays or ShapeDtypeStructs
  (nothing runs: the function is only traced)."""
  jaxpr = jax.make_jaxpr(lambda *a: fn(*a, **kwargs))(*args)
  return count_jaxpr(jaxpr)


def forward_flops(fn: Callable, *args: Any, **kwargs: Any) -> float:
  """FLOPs of one call of `fn` (matrix products and convolutions), for the whole batch given."""
  return count(fn, *args, **kwargs).flops


def train_step_flops(forward_fn: Callable, *args: Any, **kwargs: Any) -> float:
  """Model FLOPs of one training step whose forward pass is `forward_fn(*args, **kwargs)`:
  3 x the forward (see the module docstring), for the whole global batch. Divide by the number
  of devices for the per-device figure that MFU compares with one device's peak."""
  return TRAIN_FLOPS_PER_FORWARD * forward_flops(forward_fn, *args, **kwargs)


def attention_flops(batch: int, num_heads: int, q_len: int, kv_len: int, head_dim: int) -> float:
  """Forward FLOPs of QK^T and PV of one attention layer, over all q_len x kv_len scores (the
  masked half of causal attention included, as 12LTd counts it)."""
  return 2 * 2.0 * batch * num_heads * q_len * kv_len * head_dim


def transformer_train_flops(num_params: int, num_layers: int, seq_len: int, width: int,
                            tokens: int) -> float:
  """The 6N + 12LTd estimate of a decoder's training FLOPs for `tokens` tokens (PaLM, appendix B):
  a cross-check for `train_step_flops` of a transformer."""
  return tokens * (6.0 * num_params + 12.0 * num_layers * seq_len * width)


def with_xla_attention(model):
  """`model` with attention='xla' where it has an `attention` field: a fused attention kernel
  (cuDNN, Pallas) is opaque to the count; the XLA implementation does the same matrix products."""
  if "attention" in getattr(model, "__dataclass_fields__", {}):
    return model.clone(attention="xla")
  return model
