"""Helpers for tests that work with the Task core directly."""

from lepton_jax.data import pipeline
from lepton_jax.train import loop
from lepton_jax.train.feed import TrainFeed


def build(config, devices=None):
  """(dataset, task) as a training run builds them."""
  return loop.build(config, devices)


def first_batch(task, dataset) -> dict:
  """Global batch number 0 of the training split, on the task's batch sharding."""
  with TrainFeed(task, dataset, 0) as feed:
    return pipeline.make_global(feed.host_batch(0), task.batch_sharding)
