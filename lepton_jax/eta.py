"""How long a run has left: training, and the evaluations, checkpoint saves and final report
still ahead.

The loop feeds `EtaEstimator` the measured durations of what it did (train
intervals, each evaluation, the blocking part of each checkpoint save); the
estimate adds, for what is left of the schedule, the train steps at the recent
rate, the evaluations and saves at their measured mean durations (evaluations
after the first, which compiled the eval step, once there are such), and the
final report. Before the first evaluation has been timed, one is estimated from
the eval split's size and the train rate: a forward pass costs a third of a
train step's forward and backward per example (the convention of
`lepton_jax.flops`). Before the first save has been timed, saves count as free;
the final report (plots and summary.md, from the last evaluation's results)
counts as one evaluation.
"""

import collections

# An eval example costs this fraction of a train example (forward only vs forward + backward).
EVAL_COST_PER_TRAIN_EXAMPLE = 1 / 3


def events_after(step: int, total_steps: int, every: int) -> int:
  """How many of the steps step+1..total_steps are multiples of `every` or the last step."""
  if step >= total_steps:
    return 0
  every = max(1, every)
  count = total_steps // every - step // every
  return count + (1 if total_steps % every else 0)


class EtaEstimator:
  """The time left, from measured durations and the known schedule.

  Args:
    total_steps: the run's last step.
    eval_every / checkpoint_every: steps between evaluations / saves (both also run at the last
      step).
    train_batch_size / eval_examples: examples per train step and in the eval split (for the
      estimate of an evaluation not yet timed).
    final_report: whether plots and summary are written after the last step.
    window: train intervals whose rate counts (the recent ones: compilation, caches and other
      programs make the early rate differ).
  """

  def __init__(self, total_steps: int, eval_every: int, checkpoint_every: int, *,
               train_batch_size: int, eval_examples: int, final_report: bool = True,
               window: int = 5):
    self.total_steps = total_steps
    self.eval_every = eval_every
    self.checkpoint_every = checkpoint_every
    self.train_batch_size = train_batch_size
    self.eval_examples = eval_examples
    self.final_report = final_report
    self._train = collections.deque(maxlen=window)  # (steps, seconds) of recent intervals
    self._evals: list[float] = []
    self._saves: list[float] = []
    self._last_eval_step = -1
    self._last_save_step = -1

  def record_train(self, steps: int, seconds: float) -> None:
    """`steps` train steps took `seconds` (evaluations and saves not included)."""
    if steps > 0 and seconds >= 0:
      self._train.append((steps, seconds))

  def record_eval(self, step: int, seconds: float) -> None:
    self._evals.append(seconds)
    self._last_eval_step = step

  def record_checkpoint(self, step: int, seconds: float) -> None:
    """The save at `step` blocked training for `seconds`."""
    self._saves.append(seconds)
    self._last_save_step = step

  def seconds_per_step(self) -> float | None:
    steps = sum(n for n, _ in self._train)
    return sum(s for _, s in self._train) / steps if steps else None

  def eval_seconds(self) -> float | None:
    """One evaluation: the mean of those timed (but the first, which compiled the eval step,
    once there are others), else estimated from the train rate."""
    if self._evals:
      timed = self._evals[1:] or self._evals
      return sum(timed) / len(timed)
    rate = self.seconds_per_step()
    if rate is None:
      return None
    return rate * EVAL_COST_PER_TRAIN_EXAMPLE * self.eval_examples / max(1, self.train_batch_size)

  def checkpoint_seconds(self) -> float:
    return sum(self._saves) / len(self._saves) if self._saves else 0.0

  def _ahead(self, step: int, every: int, last_done: int) -> int:
    """Events after `step`, and the one at `step` if it is due and not yet recorded."""
    due_now = step > 0 and (step % max(1, every) == 0 or step == self.total_steps)
    return events_after(step, self.total_steps, every) + int(due_now and last_done < step)

  def remaining(self, step: int) -> float | None:
    """Seconds left after step `step` has trained; None before any train interval is recorded."""
    rate, eval_seconds = self.seconds_per_step(), self.eval_seconds()
    if rate is None:
      return None
    evals = self._ahead(step, self.eval_every, self._last_eval_step)
    saves = self._ahead(step, self.checkpoint_every, self._last_save_step)
    report = eval_seconds if self.final_report and step <= self.total_steps else 0.0
    return (max(0, self.total_steps - step) * rate + evals * eval_seconds
            + saves * self.checkpoint_seconds() + report)
