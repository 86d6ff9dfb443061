"""Language modelling: next-token cross-entropy over (batch, time) tokens.

    config.experiment = "language_model"
    config.data.name = "text_files"              # tokens (B, T) and targets (B, T), int32
    config.model.name = "transformer_lm"         # or lstm/gru with head='lm'
    config.metrics = ("loss", "bits_per_byte", "accuracy")
    config.eval.best_metric, config.eval.best_mode = "loss", "min"

The model maps the dataset's input (`tokens`, B x T) to logits (B, T, vocab);
the loss at position t is the cross-entropy of `targets`[t] (the next byte).
Training uses config.loss (label smoothing included); evaluation sums the
plain cross-entropy (no smoothing) and correct predictions over every token
of the real (unmasked) rows, so `loss` is the exact mean per token over the
split (in nats), `perplexity` = exp(loss) and `accuracy` the fraction of
tokens whose most likely next token is the right one. `bits_per_byte` is the
summed loss in bits over the UTF-8 bytes of the text the targets stand for,
loss_sum / ln 2 / target bytes, when the batches carry `target_bytes` (text
prepared by text_files, for any tokenizer), so that models with different
tokenizers compare; without them, loss / ln 2 per token (a byte, for
byte-level data). Metrics of a confusion matrix (precision, recall, f1) do not
apply.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax import metrics, registry
from lepton_jax.errors import UserError
from lepton_jax.experiments.base import Experiment

# Metrics of the statistics this experiment sums; anything else (the confusion
# matrix metrics) is refused when the experiment is built.
LM_METRICS = ("loss", "bits_per_byte", "perplexity", "accuracy")


def token_cross_entropy(logits, targets, label_smoothing: float = 0.0):
  """Cross-entropy of integer targets under softmax(logits), computed in float32: the
  'softmax_cross_entropy' loss (label smoothing spreads `label_smoothing` of the target's
  mass evenly over the vocabulary) written as logsumexp(z) - (1 - a) z[target] - a mean(z).

  Models return logits in the compute dtype (bf16 on accelerators); upcasting here, inside
  reductions, lets XLA fuse the convert instead of keeping an f32 copy of (B, T, vocab),
  and neither a one-hot nor a log-softmax of that size is built (optax's versions compute
  in the dtype of their input, and build one or the other)."""
  z = logits.astype(jnp.float32)
  target = jnp.take_along_axis(z, targets[..., None], axis=-1)[..., 0]
  loss = jax.nn.logsumexp(z, axis=-1) - (1.0 - label_smoothing) * target
  if label_smoothing:
    loss = loss - label_smoothing * jnp.mean(z, axis=-1)
  return loss


@registry.register("metric", "bits_per_byte")
def bits_per_byte(stats):
  """Summed loss in bits over the target bytes (loss_sum / ln 2 / target_bytes) when the stats
  have them; else the mean loss in bits per token (a byte, for byte-level models)."""
  if "target_bytes" in stats:
    return float(stats["loss_sum"]) / math.log(2.0) / max(float(stats["target_bytes"]), 1.0)
  return metrics.loss(stats) / math.log(2.0)


@registry.register("metric", "perplexity")
def perplexity(stats):
  """exp(mean loss): the perplexity of a language model."""
  return math.exp(min(metrics.loss(stats), 700.0))


@registry.register("experiment", "language_model")
class LanguageModel(Experiment):
  """Next-token prediction: (B, T) tokens -> (B, T, vocab) logits, scored against targets."""

  generative = True

  def __init__(self, config, info):
    super().__init__(config, info)
    self.input_key = info.input_key
    # The next-token targets: 'targets' (text_files), unless the dataset names another key.
    # (A DatasetInfo rebuilt from a run record may carry only the default 'label'.)
    self.label_key = info.label_key if info.label_key != "label" else "targets"
    if len(info.input_shape) != 1 or not jnp.issubdtype(info.input_dtype, jnp.integer):
      raise UserError(f"experiment 'language_model' needs integer token sequences; dataset "
                      f"{info.name!r} gives {info.input_key!r} of shape {tuple(info.input_shape)} "
                      f"and dtype {np.dtype(info.input_dtype).name} "
                      "(use data.name='text_files')")
    self.vocab_size = int(info.num_classes)
    self.loss_fn = registry.get("loss", config.loss.name)
    if config.loss.name == "softmax_cross_entropy":
      self.loss_fn = token_cross_entropy  # the same loss, in f32 and without a one-hot
    self.label_smoothing = float(config.loss.label_smoothing)
    self.metric_names = tuple(config.metrics)
    for name in self.metric_names:
      registry.get("metric", name)  # a typo fails now, not after training
    unfit = [n for n in self.metric_names if n not in LM_METRICS]
    if unfit:
      raise UserError(f"metric(s) {', '.join(unfit)} do not apply to experiment 'language_model'; "
                      f"choose from {', '.join(LM_METRICS)} (config.metrics)")

  @property
  def tokens_per_example(self) -> int:
    return int(self.info.input_shape[0])  # T: the loop's tokens/s = examples/s * T

  @property
  def model_kwargs(self) -> dict:
    return {"vocab_size": self.vocab_size}

  def _targets(self, batch):
    return batch[self.label_key].astype(jnp.int32)

  def loss(self, outputs, batch):
    """Per-example loss: the mean over the example's tokens, shape (B,)."""
    per_token = self.loss_fn(outputs, self._targets(batch), label_smoothing=self.label_smoothing)
    return per_token.reshape(per_token.shape[0], -1).mean(axis=-1)

  def predictions(self, outputs):
    return jnp.argmax(outputs, axis=-1)

  def probabilities(self, outputs):
    return jax.nn.softmax(outputs.astype(jnp.float32), axis=-1)

  def train_metrics(self, outputs, batch, per_example_loss):
    correct = self.predictions(outputs) == self._targets(batch)
    return {"loss": per_example_loss.mean(), "accuracy": correct.mean()}

  def eval_statistics(self, outputs, batch, mask):
    """Sums over the tokens of the real (unmasked) rows of one batch."""
    targets = self._targets(batch)
    per_token = token_cross_entropy(outputs, targets)
    weights = jnp.broadcast_to(mask.reshape((-1,) + (1,) * (targets.ndim - 1)),
                               targets.shape).astype(jnp.float32)
    correct = (self.predictions(outputs) == targets).astype(jnp.float32)
    stats = {
        "loss_sum": jnp.sum(per_token * weights),
        "correct": jnp.sum(correct * weights),
        "tokens": jnp.sum(weights),
        "count": jnp.sum(mask.astype(jnp.float32)),  # examples: the loop checks it
    }
    if "target_bytes" in batch:  # the UTF-8 bytes each example's targets stand for
      stats["target_bytes"] = jnp.sum(batch["target_bytes"].astype(jnp.float32) * mask)
    return stats

  def summarize(self, stats) -> dict[str, float]:
    tokens = max(float(stats["tokens"]), 1.0)
    per_token = {"loss_sum": stats["loss_sum"], "count": stats["tokens"]}
    out = {}
    for name in self.metric_names:
      if name == "accuracy":
        out[name] = float(stats["correct"]) / tokens
      elif name == "bits_per_byte":
        out[name] = bits_per_byte({**per_token, **({"target_bytes": stats["target_bytes"]}
                                                   if "target_bytes" in stats else {})})
      else:
        out[name] = registry.get("metric", name)(per_token)
    return out
