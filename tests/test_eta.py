"""lepton_jax.eta: the time left, checked against simulated runs on a fake clock."""

import random

import pytest

from lepton_jax import eta


class FakeClock:
  def __init__(self):
    self.now = 0.0

  def advance(self, seconds: float) -> float:
    self.now += seconds
    return seconds


def simulate(total=1200, log_every=20, eval_every=100, checkpoint_every=200, step_seconds=0.01,
             eval_seconds=5.0, first_eval_extra=1.0, save_seconds=0.3, report_seconds=4.0,
             eval_examples=360, batch=64, seed=0):
  """Runs a fake loop; returns [(step, estimated seconds left, true seconds left)] at every log
  step (where the progress line shows the ETA, before that step's eval and save)."""
  rng = random.Random(seed)
  clock = FakeClock()
  estimator = eta.EtaEstimator(total, eval_every, checkpoint_every, train_batch_size=batch,
                               eval_examples=eval_examples)
  estimates = []
  for step in range(log_every, total + 1, log_every):
    train = sum(clock.advance(step_seconds * rng.uniform(0.8, 1.2)) for _ in range(log_every))
    estimator.record_train(log_every, train)
    estimates.append((step, estimator.remaining(step), clock.now))
    if step % eval_every == 0 or step == total:
      extra = first_eval_extra if step == eval_every else 0.0
      estimator.record_eval(step, clock.advance(eval_seconds * rng.uniform(0.9, 1.1) + extra))
    if step % checkpoint_every == 0 or step == total:
      estimator.record_checkpoint(step, clock.advance(save_seconds * rng.uniform(0.5, 1.5)))
  clock.advance(report_seconds)
  return [(step, estimate, clock.now - at) for step, estimate, at in estimates]


def test_events_after_counts_the_schedule_and_the_last_step():
  assert eta.events_after(0, 1200, 100) == 12
  assert eta.events_after(100, 1200, 100) == 11
  assert eta.events_after(0, 1250, 100) == 13  # 100..1200 and the last step
  assert eta.events_after(1200, 1200, 100) == 0


def test_within_1_5x_of_the_truth_when_evaluations_dominate():
  """Quickstart-like: 1,200 steps, an eval every 100 steps costing 5x the 100 train steps."""
  rows = simulate()
  timed = [(step, est, true) for step, est, true in rows if step > 100]
  assert timed
  for step, estimate, true in timed:
    assert 1 / 1.5 <= estimate / true <= 1.5, (step, estimate, true)
  # What the progress line showed before: train steps alone, several times too short.
  step, _, true = next(r for r in rows if r[0] == 600)
  naive = (1200 - step) * 0.01
  assert true / naive > 4


def test_before_any_eval_is_timed_the_eval_is_estimated_from_the_split_size():
  estimator = eta.EtaEstimator(1000, 100, 500, train_batch_size=64, eval_examples=6400)
  assert estimator.remaining(0) is None  # nothing measured yet: no figure rather than a wrong one
  estimator.record_train(20, 0.2)  # 10 ms a step
  one_eval = 0.01 * 6400 / 64 / 3
  assert estimator.eval_seconds() == pytest.approx(one_eval)
  # 980 steps, 10 evals, the report as one more eval; saves are free until one is timed.
  assert estimator.remaining(20) == pytest.approx(980 * 0.01 + 10 * one_eval + one_eval)
  estimator.record_checkpoint(500, 2.0)
  # The save at 500 is done; the one at 1000 is ahead. The eval at 500 is not recorded yet.
  assert estimator.remaining(500) == pytest.approx(500 * 0.01 + 6 * one_eval + 2.0 + one_eval)


def test_the_event_at_the_current_step_counts_until_it_is_recorded():
  estimator = eta.EtaEstimator(300, 100, 1000, train_batch_size=10, eval_examples=10,
                               final_report=False)
  estimator.record_train(100, 1.0)
  estimator.record_eval(50, 4.0)  # a first eval (compiling) and a steady one
  estimator.record_eval(60, 2.0)
  assert estimator.eval_seconds() == 2.0
  # At step 100 its eval has not run yet: 200 steps, evals at 100, 200, 300, saves at 300.
  assert estimator.remaining(100) == pytest.approx(2.0 + 3 * 2.0)
  estimator.record_eval(100, 2.0)
  assert estimator.remaining(100) == pytest.approx(2.0 + 2 * 2.0)


def test_the_rate_follows_recent_intervals():
  estimator = eta.EtaEstimator(10_000, 10_000, 10_000, train_batch_size=1, eval_examples=0,
                               final_report=False, window=3)
  estimator.record_train(100, 100.0)  # a slow start (compilation, warm-up)
  for _ in range(3):
    estimator.record_train(100, 1.0)
  assert estimator.seconds_per_step() == pytest.approx(0.01)
