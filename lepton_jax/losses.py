"""Registered losses: fn(outputs, targets, **config) -> per-example loss."""

import jax
import jax.numpy as jnp
import optax

from lepton_jax import registry


@registry.register("loss", "softmax_cross_entropy")
def softmax_cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Cross-entropy of integer labels under softmax(logits), optional label smoothing."""
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


@registry.register("loss", "sigmoid_binary_cross_entropy")
def sigmoid_binary_cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Binary cross-entropy of 0/1 labels under sigmoid of a single logit."""
  logits = logits.reshape(labels.shape)
  targets = labels.astype(jnp.float32)
  if label_smoothing:
    targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
  return optax.sigmoid_binary_cross_entropy(logits, targets)


@registry.register("loss", "mean_squared_error")
def mean_squared_error(predictions, targets, label_smoothing: float = 0.0):
  """Mean over output dimensions of (prediction - target)^2."""
  del label_smoothing
  predictions = predictions.reshape(targets.shape[0], -1)
  targets = targets.reshape(targets.shape[0], -1).astype(predictions.dtype)
  return jnp.mean(jnp.square(predictions - targets), axis=-1)

