"""train/dispatch.py: how many steps a dispatch runs, and what counts as waiting for input."""

import time
import types

from lepton_jax.train import dispatch


class Done:
  """Stands for a step's output: `is_ready()` says whether the devices finished that step."""

  def __init__(self, ready: bool):
    self.ready = ready

  def is_ready(self) -> bool:
    return self.ready


class SlowFeed:
  """A streamed feed whose next batch takes `seconds` to come."""

  on_device = False

  def __init__(self, seconds: float):
    self.seconds = seconds

  def next_args(self):
    time.sleep(self.seconds)
    return ({"x": 0},)


def dispatcher(feed, outputs):
  task = types.SimpleNamespace(total_steps=100, steps_per_epoch=10)
  d = dispatch.Dispatcher.__new__(dispatch.Dispatcher)
  d.task, d.feed, d.k = task, feed, 1
  d._previous = d._multi = None
  d._single = lambda state, *args: (state, {"loss": outputs.pop(0)})
  return d


def test_a_wait_counts_only_when_the_devices_had_finished_the_previous_step():
  # Step 1: nothing ran before, so its wait counts. Step 2: step 1 is still running when the batch
  # comes (not ready): the wait overlapped it and counts 0. Step 3: step 2 had finished: counts.
  running, finished = Done(False), Done(True)
  d = dispatcher(SlowFeed(0.02), [running, finished, Done(True)])
  waits = [d.step("state", 1)[2] for _ in range(3)]
  assert waits[0] >= 0.02
  assert waits[1] == 0.0
  assert waits[2] >= 0.02


def test_span_never_crosses_a_due_step_or_the_end():
  d = dispatcher(SlowFeed(0), [])
  d.k = 4
  due = {8}.__contains__
  assert d.span(0, due) == 4  # steps 1-3 are not due; step 4 ends the dispatch
  assert d.span(5, due) == 1  # step 8 is due inside 6..9: single steps until then
  assert d.span(8, due) == 4
  assert d.span(97, due) == 1  # 98..101 would run past the end
