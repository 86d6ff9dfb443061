"""train(config, workdir): the one train loop.

It reads top to bottom: build the Task from the config and the dataset's description, resume (or
start) the state, compile the step for its feed, then per step: feed, step, and whatever the
schedule says is due (log, evaluate, save) or a stop request asks for. Everything a step computes
is a jitted function of (state, batch); the host feeds batches and, at log steps, reads the
metrics back.
"""

import contextlib
import dataclasses
import time

import jax

from lepton_jax import perf, run_record, task as task_lib, workdir as workdir_lib
from lepton_jax.checkpoint import resume
from lepton_jax.checkpoint.manager import Checkpointer
from lepton_jax.data import base as data_base, statistics
from lepton_jax.evaluate import Evaluator
from lepton_jax.train import preemption
from lepton_jax.train.dispatch import Dispatcher
from lepton_jax.train.feed import TrainFeed, check_position
from lepton_jax.train.log import TrainLog


@dataclasses.dataclass
class TrainResult:
  """How a run ended: its last evaluation (metrics and the statistics they came from)."""

  step: int
  metrics: dict
  eval_stats: dict | None  # None when the last evaluation happened in an earlier command
  wall_seconds: float
  trained: bool  # False: the run was complete before this command

  def as_dict(self) -> dict:
    return dict(self.metrics, step=self.step)


def train(config, workdir: str, devices=None, stop_requested=None) -> TrainResult:
  """Trains `config` in `workdir`, resuming from its newest checkpoint."""
  clock, primary = time.time(), jax.process_index() == 0
  run_record.prepare(workdir)
  dataset, task = build(config, devices)
  with contextlib.ExitStack() as stack:
    stack.enter_context(workdir_lib.hold(workdir))  # one run per workdir
    log = stack.enter_context(TrainLog(workdir, task, enabled=primary))
    log.setup()
    checkpointer = stack.enter_context(Checkpointer.for_training(workdir, config))
    profiler = stack.enter_context(perf.Profiler(workdir, config.perf.profile_start_step,
                                                 config.perf.profile_num_steps, enabled=primary))
    state, meta = resume.start_state(checkpointer, task, log.print)
    check_position(task, dataset, meta.get("input"))  # another data order is refused here
    if primary:  # only now: a refused resume must leave every file as it was
      run_record.write(workdir, config, task.run_record(), resuming=bool(meta))
    start = int(jax.device_get(state.step))
    last = LastEval(meta.get("metrics") or {}, Evaluator(task, dataset), log)
    if start < task.total_steps:
      feed = stack.enter_context(TrainFeed(task, dataset, start))
      runner = Dispatcher.for_task(task, feed)
      log.compiled(runner.compile())
    log.start(start, meta.get("pending_train_metrics"))  # the clock starts after compiling
    step = start
    while step < task.total_steps:
      n = runner.span(step, lambda s: Due(task, s).anything)  # 1, or k steps in one program
      profiler.before_step(step + 1)
      state, metrics, waited = runner.step(state, n)
      step += n
      profiler.after_step(step, state)
      log.record(step, metrics, waited, n)
      checkpointer.poll()  # a failed save stops the run now, not at the next save
      due = Due(task, step)
      stop = preemption.should_stop(step, stop_requested, exchange=due.log or due.save)
      if due.log or due.save:
        log.flush(step)
      if due.eval:
        last.evaluate(state, step)
      if due.save or stop or (due.eval and checkpointer.is_new_best(last.metrics)):
        save(checkpointer, log, last, step, state, evaluated=due.eval, position=feed.position())
      if stop and not due.last:
        checkpointer.wait()
        log.print(f"stopped at step {step}: checkpoint committed; run the same command to continue")
        raise preemption.Preempted(step)
    checkpointer.wait()
    if start >= task.total_steps:  # the run was already complete: evaluate what it left
      last.evaluate(state, start, log_row=False)
  log.done(time.time() - clock)
  return TrainResult(task.total_steps, last.metrics, last.stats, time.time() - clock,
                     trained=start < task.total_steps)


def save(checkpointer, log: TrainLog, last: "LastEval", step: int, state, evaluated: bool,
         position: dict) -> None:
  """Starts saving checkpoint `step` with what a resume needs (its last evaluation, the train
  metrics not logged yet, the input position); the eval metrics rank it among the best when it
  evaluated."""
  t0 = time.perf_counter()
  checkpointer.save(step, state, meta={"metrics": last.metrics,
                                       "pending_train_metrics": log.pending(),
                                       "input": position},
                    metrics=last.metrics if evaluated else None)
  log.saved(step, time.perf_counter() - t0)


def build(config, devices=None):
  """(dataset, Task) of a training run: the dataset's statistics are resolved here, once."""
  dataset = data_base.build(config.data)
  info = dataset.info()
  specs = statistics.resolve(config.data, dataset, info.input_key)
  return dataset, task_lib.build(config, info, specs, devices=devices)


class Due:
  """What the schedule asks for after `step`: a log row, an evaluation, a checkpoint."""

  def __init__(self, task, step: int):
    self.last = step == task.total_steps
    self.log = self.last or step % task.config.log_every_steps == 0
    self.eval = self.last or step % task.every("eval_every_steps") == 0
    self.save = self.last or step % task.every("checkpoint_every_steps") == 0
    self.anything = self.last or self.log or self.eval or self.save


class LastEval:
  """The newest evaluation: its metrics go into checkpoints, and the report reuses its sums."""

  def __init__(self, metrics: dict, evaluator: Evaluator, log: TrainLog):
    self.metrics, self.stats = dict(metrics), None
    self.evaluator, self.log = evaluator, log

  def evaluate(self, state, step: int, log_row: bool = True) -> None:
    """Evaluates on config.eval.split; `log_row=False` prints without a metrics row (a finished
    run's evaluation, already logged by the command that trained it)."""
    t0 = time.perf_counter()
    split = self.evaluator.task.config.eval.split
    self.metrics, self.stats = self.evaluator.evaluate(state, split)
    self.log.eval(step, split, self.metrics, time.perf_counter() - t0, write=log_row)
