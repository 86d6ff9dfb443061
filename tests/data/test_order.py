"""The data order (lepton_jax/data/order.py): the documented batches, disjoint shards per
process, and evaluation that sees every example once."""

import numpy as np
import pytest

from lepton_jax.data import order
from lepton_jax.errors import UserError


def reference_batch(n, num_shards, local_shards, batch, seed, step):
  """The documented order, written out: every local shard gives batch / num_shards rows of its
  permutation for the epoch, seeded by (seed, shard, epoch); what lepton_jax has always fed."""
  bounds = order.shard_bounds(n, num_shards)
  rows = batch // num_shards
  steps = min(hi - lo for lo, hi in bounds) // rows
  epoch, position = divmod(step, steps)
  parts = []
  for shard in local_shards:
    lo, hi = bounds[shard]
    perm = np.random.default_rng([seed, shard, epoch]).permutation(hi - lo)
    parts.append(lo + perm[position * rows:(position + 1) * rows])
  return np.concatenate(parts)


def layout(num_shards, process_index=0, process_count=1):
  return order.ShardLayout.create(num_shards, process_index, process_count)


@pytest.mark.parametrize("n,shards,batch", [(103, 1, 10), (97, 2, 8), (50, 5, 5)])
def test_train_order_is_the_documented_order(n, shards, batch):
  new = order.TrainOrder.create(n, layout(shards), batch, seed=7)
  assert new.steps_per_epoch == min(hi - lo for lo, hi in order.shard_bounds(n, shards)) // (
      batch // shards)
  for step in range(2 * new.steps_per_epoch + 3):  # across epoch boundaries
    want = reference_batch(n, shards, range(shards), batch, 7, step)
    np.testing.assert_array_equal(new.step_indices(step), want)
    epoch, position = divmod(step, new.steps_per_epoch)
    np.testing.assert_array_equal(new.local_rows(epoch)[position], want)


def test_shards_are_near_equal_and_contiguous():
  for n, shards in ((10, 3), (7, 7), (3, 4)):
    bounds = order.shard_bounds(n, shards)
    sizes = [hi - lo for lo, hi in bounds]
    assert sizes == [len(a) for a in np.array_split(np.arange(n), shards)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))


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
  with pytest.raises(UserError, match="not a multiple of the 2 processes"):
    order.ShardLayout.create(3, 0, 2)
