"""Helpers for tests that work with the Task core directly."""

from lepton_jax.data import pipeline
from lepton_jax.train import loop


def build(config, devices=None):
  """(dataset, task) as a training run builds them."""
  return loop.build(config, devices)


def first_batch(task, dataset) -> dict:
  """Global batch number 0 of the training split, on the task's batch sharding."""
  data = pipeline.TrainData(dataset, task.config.data.train_split, task.config.batch_size,
                            task.config.seed, task.layout)
  return pipeline.make_global(data.batch(0), task.batch_sharding)
