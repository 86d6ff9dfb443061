"""Classification experiments: multi-class (softmax) and binary (one sigmoid logit).

An experiment is what turns a model's outputs on a batch into a loss, training
metrics and the statistics evaluation sums over a split. Model, data, loss and
metric names all come from the config; the experiment only fixes how they fit.
"""

import jax
import jax.numpy as jnp

from lepton_jax import metrics, registry
from lepton_jax.errors import UserError
from lepton_jax.experiments.base import Experiment


@registry.register("experiment", "classification")
class Classification(Experiment):
  """Multi-class classification: softmax outputs, per-class confusion statistics."""

  has_confusion = True
  label_key = "label"

  def __init__(self, config, info):
    super().__init__(config, info)
    self.input_key = info.input_key
    self.num_classes = info.num_classes
    self.loss_fn = registry.get("loss", config.loss.name)
    self.label_smoothing = float(config.loss.label_smoothing)
    self.metric_names = tuple(config.metrics)
    for name in self.metric_names:
      registry.get("metric", name)  # a typo fails now, not after training
    if self.binary and info.num_classes != 2:
      raise UserError(f"experiment {config.experiment!r} needs a 2-class dataset; "
                      f"{info.name!r} has {info.num_classes} classes")

  @property
  def model_kwargs(self) -> dict:
    """What the experiment tells the model about its output layer."""
    return {"num_classes": 1 if self.binary else self.num_classes}

  def loss(self, outputs, batch):
    return self.loss_fn(outputs, batch[self.label_key], label_smoothing=self.label_smoothing)

  def probabilities(self, outputs):
    if self.binary:
      p = jax.nn.sigmoid(outputs.reshape(outputs.shape[0]))
      return jnp.stack([1.0 - p, p], axis=-1)
    return jax.nn.softmax(outputs, axis=-1)

  def predictions(self, outputs, threshold: float = 0.5):
    if self.binary:
      return (jax.nn.sigmoid(outputs.reshape(outputs.shape[0])) >= threshold).astype(jnp.int32)
    return jnp.argmax(outputs, axis=-1)

  def train_metrics(self, outputs, batch, per_example_loss):
    correct = self.predictions(outputs) == batch[self.label_key]
    return {"loss": per_example_loss.mean(), "accuracy": correct.mean()}

  def eval_statistics(self, outputs, batch, mask):
    """Sums over the real (unmasked) rows of one batch."""
    labels = batch[self.label_key].astype(jnp.int32)
    weights = mask.astype(jnp.float32)
    confusion = jnp.zeros((self.num_classes, self.num_classes), jnp.float32)
    confusion = confusion.at[labels, self.predictions(outputs)].add(weights)
    return {
        "loss_sum": jnp.sum(self.loss(outputs, batch) * weights),
        "count": jnp.sum(weights),
        "confusion": confusion,
    }

  def summarize(self, stats) -> dict[str, float]:
    return metrics.compute(self.metric_names, dict(stats, binary=self.binary))


@registry.register("experiment", "binary_classification")
class BinaryClassification(Classification):
  """Binary classification: one sigmoid logit, metrics of the positive class (label 1)."""

  binary = True
