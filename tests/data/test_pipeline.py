"""The device end of the pipeline (lepton_jax/data/pipeline.py): prefetching and the on-device
gather, which picks exactly the rows the stream reads."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from lepton_jax.data import order, pipeline, sources, stream


def test_prefetch_propagates_errors_and_stops():
  def broken():
    yield {"x": np.zeros(2)}
    raise ValueError("boom")
  it = pipeline.prefetch(broken(), lambda b: b)
  next(it)
  with pytest.raises(ValueError, match="boom"):
    next(it)


@pytest.mark.parametrize("num_shards", [1, 3])
def test_on_device_gather_is_the_streamed_batch(num_shards):
  source = sources.ArraySource({"x": np.arange(101, dtype=np.int32) * 3})
  layout = order.ShardLayout.create(num_shards, 0, 1)
  o = order.TrainOrder.create(len(source), layout, 12, seed=5)
  assert o.steps_per_epoch == 8  # 101 rows in 3 shards of >= 33: 8 batches of 4 per shard
  mesh = jax.make_mesh((4,), ("data",), devices=jax.devices()[:4])
  replicated = NamedSharding(mesh, PartitionSpec())
  arrays = jax.device_put(sources.gather(source, range(*o.local_range)), replicated)
  gather = jax.jit(pipeline.gather_batch, out_shardings=NamedSharding(mesh, PartitionSpec("data")))
  streamed = stream.train_batches(source, layout, 12, seed=5, start_step=5)
  for step in range(5, 21):  # across two epoch boundaries, as a resumed run would
    rows = jax.device_put(o.local_rows(step // o.steps_per_epoch), replicated)
    got = gather(arrays, rows, np.int32(step))
    np.testing.assert_array_equal(np.asarray(got["x"]), next(streamed)["x"])
  streamed.close()
