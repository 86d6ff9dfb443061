"""The streamed pipeline (lepton_jax/data/stream.py): the on-device path's batches bit for bit,
exact resume with and without worker processes, evaluation with a mask, no shared memory."""

from multiprocessing import shared_memory

import jax
import numpy as np
import pytest

from lepton_jax.data import order, pipeline, sources, stream
from lepton_jax.data.prepare import core, sklearn_sets
from lepton_jax.errors import UserError


def layout(num_shards=0, process_index=0, process_count=1):
  return order.ShardLayout.create(num_shards, process_index, process_count)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  manifest = core.ensure(sklearn_sets.Digits(), str(tmp_path_factory.mktemp("records")), verbose=False)
  return sources.RecordSource(manifest, "train")


def take(batches, n):
  return [next(batches) for _ in range(n)]


def assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
      assert x[k].dtype == y[k].dtype


def test_streamed_batches_are_the_on_device_gathered_batches(digits):
  batch, seed = 64, 5
  o = order.TrainOrder.create(len(digits), layout(), batch, seed)
  lo, hi = o.local_range
  on_device = jax.device_put(sources.gather(digits, range(lo, hi)))
  streamed = stream.train_batches(digits, layout(), batch, seed, start_step=o.steps_per_epoch - 2)
  for step in range(o.steps_per_epoch - 2, o.steps_per_epoch + 2):  # across an epoch boundary
    rows = jax.device_put(o.local_rows(step // o.steps_per_epoch))
    gathered = pipeline.gather_batch(on_device, rows, jax.numpy.asarray(step))
    host = next(streamed)
    for k in gathered:
      np.testing.assert_array_equal(np.asarray(gathered[k]), host[k])


def test_two_processes_stream_disjoint_halves_of_every_global_batch(digits):
  whole = stream.train_batches(digits, layout(2), 32, seed=1)
  halves = [stream.train_batches(digits, layout(2, p, 2), 32, seed=1) for p in range(2)]
  seen = [set(), set()]
  for _ in range(40):  # more than an epoch
    parts = [next(h) for h in halves]
    for p, part in enumerate(parts):
      seen[p] |= {x.tobytes() for x in part["image"]}
    full = next(whole)
    for k in full:
      np.testing.assert_array_equal(full[k], np.concatenate([parts[0][k], parts[1][k]]))
  assert not seen[0] & seen[1]


class RecordingSharedMemory(shared_memory.SharedMemory):
  """Notes the name of every shared-memory block this process opens."""

  names: set = set()

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    RecordingSharedMemory.names.add(self.name)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_restored_iterator_continues_bit_identically(digits, workers, monkeypatch):
  def augment(example, rng):  # random host work: must be replayed exactly too
    return {**example, "noise": rng.integers(0, 1000, 3)}

  first = stream.train_batches(digits, layout(), 48, seed=3, start_step=7, augment=augment)
  take(first, 5)
  state = first.get_state()
  assert state["position"] == 12
  expected = take(first, 4)  # what the uninterrupted run reads next
  first.close()
  monkeypatch.setattr(RecordingSharedMemory, "names", set())
  monkeypatch.setattr(shared_memory, "SharedMemory", RecordingSharedMemory)
  restored = stream.train_batches(digits, layout(), 48, seed=3, workers=workers, augment=augment)
  restored.set_state(state)
  got = take(restored, 4)
  restored.close()
  assert_same(got, expected)
  assert all(type(v) is np.ndarray for batch in got for v in batch.values())
  # Batches from workers come through a pipe: no shared memory to leave behind.
  assert not RecordingSharedMemory.names


def test_host_augmentation_does_not_depend_on_the_process_split(digits):
  def augment(example, rng):
    return {**example, "noise": rng.standard_normal(2)}

  whole = take(stream.train_batches(digits, layout(2), 32, seed=9, augment=augment), 3)
  halves = [take(stream.train_batches(digits, layout(2, p, 2), 32, seed=9, augment=augment), 3)
            for p in range(2)]
  for step in range(3):
    np.testing.assert_array_equal(
        whole[step]["noise"], np.concatenate([halves[0][step]["noise"], halves[1][step]["noise"]]))
  assert not np.array_equal(whole[0]["noise"], whole[1]["noise"])


def test_evaluation_streams_every_example_once_in_padded_batches(digits):
  counts, seen = set(), []
  for p in range(2):
    batches = stream.eval_batches(digits, layout(2, p, 2), 100,
                                  transform=lambda e: {**e, "row": e["label"] * 0 + 1})
    counts.add(len(batches))
    for batch in batches:
      assert batch["image"].shape == (50, 8, 8, 1) and batch["mask"].dtype == bool
      assert (batch["row"][~batch["mask"]] == 0).all()  # padding rows are zeros
      seen += [x.tobytes() + bytes([int(y)]) for x, y in
               zip(batch["image"][batch["mask"]], batch["label"][batch["mask"]])]
  assert len(counts) == 1
  everything = sources.gather(digits, range(len(digits)))
  assert sorted(seen) == sorted(x.tobytes() + bytes([int(y)]) for x, y in
                                zip(everything["image"], everything["label"]))


def test_a_state_of_another_data_order_is_refused(digits):
  state = stream.train_batches(digits, layout(), 32, seed=0).get_state()
  other = stream.train_batches(digits, layout(), 64, seed=0)
  with pytest.raises(UserError, match="belongs to another data order.*batch_size 32 then, 64 now"):
    other.set_state(state)


def test_processes_without_examples_still_run_every_eval_batch():
  source = sources.ArraySource({"x": np.arange(3, dtype=np.int32) + 10})
  got = []
  for p in range(4):  # 3 examples, 4 shards: the last process has none
    batches = list(stream.eval_batches(source, layout(4, p, 4), 4))
    assert len(batches) == 1 and batches[0]["x"].shape == (1,)
    got += batches[0]["x"][batches[0]["mask"]].tolist()
  assert got == [10, 11, 12]


def test_a_position_saved_by_two_processes_resumes_on_one(digits):
  """With data.num_shards fixed, the saved position is the same on every process and means the
  same batches on any process count; with one shard per process it is refused."""
  halves = [stream.train_batches(digits, layout(2, p, 2), 32, seed=4) for p in range(2)]
  for h in halves:
    take(h, 6)
  states = [h.get_state() for h in halves]
  assert states[0] == states[1]
  expected = [np.concatenate([a["image"], b["image"]]) for a, b in zip(take(halves[0], 3),
                                                                      take(halves[1], 3))]
  alone = stream.train_batches(digits, layout(2), 32, seed=4)
  alone.set_state(states[0])
  for want, got in zip(expected, take(alone, 3)):
    np.testing.assert_array_equal(got["image"], want)
  one_shard = stream.train_batches(digits, layout(0), 32, seed=4)  # num_shards = 1 process
  with pytest.raises(UserError, match="num_shards 2 then, 1 now"):
    one_shard.set_state(states[0])
