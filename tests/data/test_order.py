"""The data order (lepton_jax/data/order.py): the same batches as today's in-memory pipeline,
disjoint shards per process, and evaluation that sees every example once."""

import ml_collections
import numpy as np
import pytest

from lepton_jax.data import base, order, pipeline
from lepton_jax.data.info import DatasetInfo
from lepton_jax.errors import UserError


class ArrayDataset(base.Dataset):
  """Example i is the number i: what the in-memory pipeline reads of each shard."""

  def __init__(self, n):
    super().__init__(ml_collections.ConfigDict())
    self.n = n

  def info(self):
    return DatasetInfo("fake", "x", (), np.int32, 2, {"train": self.n})

  def read(self, split, shard_index=0, num_shards=1):
    lo, hi = order.shard_bounds(self.n, num_shards)[shard_index]
    return {"x": np.arange(lo, hi)}


def layout(num_shards, process_index=0, process_count=1):
  return pipeline.ShardLayout.create(num_shards, process_index, process_count)


@pytest.mark.parametrize("n,shards,batch", [(103, 1, 10), (97, 2, 8), (50, 5, 5)])
def test_train_order_is_todays_pipeline_order(n, shards, batch):
  old = pipeline.TrainData(ArrayDataset(n), "train", batch, 7, layout(shards))
  new = order.TrainOrder.create(n, layout(shards), batch, seed=7)
  assert new.steps_per_epoch == old.steps_per_epoch
  for step in range(2 * new.steps_per_epoch + 3):  # across epoch boundaries
    np.testing.assert_array_equal(new.step_indices(step), old.batch(step)["x"])
  for epoch in range(2):
    np.testing.assert_array_equal(new.local_rows(epoch), old.epoch_rows(epoch))


def test_processes_read_disjoint_shards_that_cover_the_split():
  n, batch = 101, 12
  whole = order.TrainOrder.create(n, layout(4), batch, seed=1)
  halves = [order.TrainOrder.create(n, layout(4, p, 2), batch, seed=1) for p in range(2)]
  ranges = [range(*h.local_range) for h in halves]
  assert not set(ranges[0]) & set(ranges[1])
  assert sorted(set(ranges[0]) | set(ranges[1])) == list(range(n))
  for step in range(3 * whole.steps_per_epoch):
    parts = [h.step_indices(step) for h in halves]
    for part, r in zip(parts, ranges):
      assert set(part.tolist()) <= set(r)
    np.testing.assert_array_equal(whole.step_indices(step), np.concatenate(parts))
  # Each shard serves only its own examples, each at most once per epoch.
  epoch = whole.epoch_indices(0).ravel()
  assert len(set(epoch.tolist())) == len(epoch)


@pytest.mark.parametrize("n,shards,batch", [(103, 1, 10), (103, 2, 8), (7, 1, 16), (50, 5, 5),
                                            (3, 4, 4)])
def test_eval_sees_every_example_once_with_the_same_batch_count(n, shards, batch):
  seen, counts = [], set()
  for p in range(shards):
    o = order.EvalOrder.create(n, layout(shards, p, shards), batch)
    counts.add(o.num_batches)
    for i in range(o.num_batches):
      indices = o.batch_indices(i)
      assert len(indices) == o.local_batch
      seen += indices[indices != order.PAD].tolist()
  assert len(counts) == 1
  assert sorted(seen) == list(range(n))


def test_bad_batch_sizes_are_user_errors():
  with pytest.raises(UserError, match="batch_size=10 is not divisible by data.num_shards=4"):
    order.TrainOrder.create(100, layout(4), 10, 0)
  with pytest.raises(UserError, match="larger than the 'train' split allows"):
    order.TrainOrder.create(10, layout(1), 64, 0)
  with pytest.raises(UserError, match="eval batch size=6 is not divisible"):
    order.EvalOrder.create(10, layout(4), 6)
