"""Registered metrics, computed from statistics summed over a whole eval split.

Evaluation accumulates, on device, the masked loss sum, the example count and
the confusion matrix (counts[true, predicted]). Every metric is a function of
those sums, so it is exact over the split (not an average of batch averages)
and reduces across devices and processes by plain summation.

Precision, recall and F1 are macro averages over classes for multi-class tasks
and those of the positive class (label 1) for binary ones.
"""

import numpy as np

from lepton_jax import registry


def _per_class(confusion):
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  predicted = confusion.sum(0)
  actual = confusion.sum(1)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = np.where(predicted > 0, tp / predicted, 0.0)
    recall = np.where(actual > 0, tp / actual, 0.0)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
  return precision, recall, f1


def _select(values, stats):
  return float(values[1]) if stats.get("binary") else float(values.mean())


@registry.register("metric", "loss")
def loss(stats):
  """Mean loss over the split."""
  return float(stats["loss_sum"]) / max(float(stats["count"]), 1.0)


@registry.register("metric", "accuracy")
def accuracy(stats):
  """Fraction of examples whose predicted class is the label."""
  confusion = np.asarray(stats["confusion"])
  return float(np.trace(confusion)) / max(float(confusion.sum()), 1.0)


@registry.register("metric", "precision")
def precision(stats):
  """Precision: macro over classes, or of the positive class for binary tasks."""
  return _select(_per_class(stats["confusion"])[0], stats)


@registry.register("metric", "recall")
def recall(stats):
  """Recall: macro over classes, or of the positive class for binary tasks."""
  return _select(_per_class(stats["confusion"])[1], stats)


@registry.register("metric", "f1")
def f1(stats):
  """F1: macro over classes, or of the positive class for binary tasks."""
  return _select(_per_class(stats["confusion"])[2], stats)


def compute(names, stats) -> dict[str, float]:
  return {name: registry.get("metric", name)(stats) for name in names}
