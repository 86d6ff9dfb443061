import ml_collections
import numpy as np
import pytest

from lepton_jax.data import base, pipeline, tfds_source
from lepton_jax.errors import UserError
from lepton_jax.data.info import DatasetInfo


class ArrayDataset(base.Dataset):
  """In-memory stand-in with the tfds even_splits shard boundaries."""

  def __init__(self, n):
    super().__init__(ml_collections.ConfigDict())
    self.x = np.arange(n, dtype=np.int32)

  def info(self):
    return DatasetInfo("fake", "x", (), np.int32, 2, {"train": len(self.x), "test": len(self.x)})

  def read(self, split, shard_index=0, num_shards=1):
    sizes = tfds_source.shard_sizes(len(self.x), num_shards)
    lo = sum(sizes[:shard_index])
    x = self.x[lo:lo + sizes[shard_index]]
    return {"x": x, "label": x % 2}


def test_shard_sizes_match_tfds_even_splits(data_dir):
  from lepton_jax.data import sklearn_datasets
  dataset = sklearn_datasets.Digits(ml_collections.ConfigDict({"data_dir": data_dir}))
  total = dataset.info().split_size("test")
  for n in (1, 3, 7):
    got = [len(dataset.read("test", i, n)["label"]) for i in range(n)]
    assert got == tfds_source.shard_sizes(total, n)


def test_train_batches_are_a_pure_function_of_the_step():
  layout = pipeline.ShardLayout.create(0, 0, 1)
  a = pipeline.TrainData(ArrayDataset(103), "train", 10, seed=3, layout=layout)
  b = pipeline.TrainData(ArrayDataset(103), "train", 10, seed=3, layout=layout)
  assert a.steps_per_epoch == 10
  seq = [a.batch(s)["x"] for s in range(25)]
  resumed = b.batches(start_step=13)
  for s in range(13, 25):
    np.testing.assert_array_equal(next(resumed)["x"], seq[s])
  epoch0 = np.concatenate(seq[:10])
  assert len(set(epoch0.tolist())) == 100  # no repeats within an epoch
  assert not np.array_equal(np.concatenate(seq[10:20]), epoch0)  # reshuffled next epoch
  other_seed = pipeline.TrainData(ArrayDataset(103), "train", 10, seed=4, layout=layout)
  assert not np.array_equal(other_seed.batch(0)["x"], seq[0])


def test_processes_read_disjoint_shards_and_rebuild_the_global_batch():
  whole = pipeline.TrainData(ArrayDataset(96), "train", 16, 0, pipeline.ShardLayout.create(2, 0, 1))
  halves = [pipeline.TrainData(ArrayDataset(96), "train", 16, 0, pipeline.ShardLayout.create(2, p, 2))
            for p in range(2)]
  seen = [set(np.concatenate([h.batch(s)["x"] for s in range(h.steps_per_epoch)]).tolist()) for h in halves]
  assert not seen[0] & seen[1]
  for step in range(8):
    np.testing.assert_array_equal(
        whole.batch(step)["x"], np.concatenate([h.batch(step)["x"] for h in halves]))


@pytest.mark.parametrize("n,shards,batch", [(103, 1, 10), (103, 2, 8), (7, 1, 16), (50, 5, 5)])
def test_eval_covers_every_example_once(n, shards, batch):
  seen = []
  for p in range(shards):
    data = pipeline.EvalData(ArrayDataset(n), "test", batch, pipeline.ShardLayout.create(shards, p, shards))
    for b in data.batches():
      assert len(b["x"]) == batch // shards * 1
      seen.extend(b["x"][b["mask"]].tolist())
  assert sorted(seen) == list(range(n))


def test_bad_batch_sizes_are_user_errors():
  layout = pipeline.ShardLayout.create(4, 0, 1)
  with pytest.raises(UserError, match="batch_size=10 is not divisible by data.num_shards=4"):
    pipeline.TrainData(ArrayDataset(100), "train", 10, 0, layout)
  with pytest.raises(UserError, match="larger than the 'train' split allows"):
    pipeline.TrainData(ArrayDataset(10), "train", 64, 0, pipeline.ShardLayout.create(0, 0, 1))
  with pytest.raises(UserError, match="not a multiple of the 2 processes"):
    pipeline.ShardLayout.create(3, 0, 2)


def test_prefetch_propagates_errors_and_stops():
  def broken():
    yield {"x": np.zeros(2)}
    raise ValueError("boom")
  it = pipeline.prefetch(broken(), lambda b: b)
  next(it)
  with pytest.raises(ValueError, match="boom"):
    next(it)


@pytest.mark.parametrize("num_shards", [1, 3])
def test_on_device_feed_gathers_exactly_the_host_batches(num_shards):
  import jax
  from jax.sharding import NamedSharding, PartitionSpec
  layout = pipeline.ShardLayout.create(num_shards, 0, 1)
  data = pipeline.TrainData(ArrayDataset(101), "train", 12, seed=5, layout=layout)
  assert data.steps_per_epoch == 8  # 101 rows in 3 shards of >= 33: 8 batches of 4 per shard
  mesh = jax.make_mesh((4,), ("data",), devices=jax.devices()[:4])
  feed = pipeline.OnDeviceFeed(data, start_step=5, replicated=NamedSharding(mesh, PartitionSpec()))
  gather = jax.jit(pipeline.gather_batch,
                   out_shardings=NamedSharding(mesh, PartitionSpec("data")))
  for step in range(5, 21):  # across two epoch boundaries, as a resumed run would
    arrays, rows = feed.next_args()
    got = gather(arrays, rows, np.int32(step))
    want = data.batch(step)
    assert set(got) == set(want)
    for key in want:
      np.testing.assert_array_equal(np.asarray(got[key]), want[key])
  feed.close()
