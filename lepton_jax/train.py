"""train_and_evaluate(config, workdir): the one train loop.

Read top to bottom: set-up, data, model and state, restore, compile, train.
Everything the loop does per step is a jitted function of (state, batch); the
host only feeds batches and, every `log_every_steps`, reads metrics back.
"""

import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from lepton_jax import config_lib, optimizers, registry
from lepton_jax.checkpoint import init_from, manager as checkpointing
from lepton_jax.parallel import mesh as mesh_lib, sharding
from lepton_jax import perf, steps, train_state
from lepton_jax.data import transforms, pipeline
from lepton_jax.data.augment import resolve_dataset_statistics
from lepton_jax.errors import UserError
from lepton_jax.metric_writers import MetricWriter, ProgressLine, format_duration

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: "checkpoint saved, run the same command again"


class TrainingDiverged(UserError):
  exit_code = 3


class Preempted(Exception):
  """Raised after the preemption checkpoint has committed."""

  exit_code = PREEMPTED_EXIT_CODE


def prepare_workdir(workdir: str) -> epath.Path:
  path = checkpointing.absolute_path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".write_test"
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise UserError(f"workdir {workdir!r} is not writable ({e.strerror or e}); choose another "
                    "--workdir") from e
  return path


class Run:
  """Everything built from a config for one run: data, model, state, steps."""

  def __init__(self, config, workdir: str, devices=None):
    self.config = config
    self.workdir = prepare_workdir(workdir)
    self.is_primary = jax.process_index() == 0

    # ---------------------------------------------------------------- data
    self.mesh = mesh_lib.make_mesh(config.mesh, devices)
    mesh_lib.check_batch(config.batch_size, self.mesh)
    self.eval_batch_size = config.eval.batch_size or config.batch_size
    mesh_lib.check_batch(self.eval_batch_size, self.mesh, "eval.batch_size")
    self.dataset = registry.get("dataset", config.data.name)(config.data)
    self.info = self.dataset.info()
    # normalize(mean='dataset', std='dataset') -> the training split's statistics, for any dataset
    resolve_dataset_statistics(config.data, self.dataset, self.info.input_key)
    self.experiment = registry.get("experiment", config.experiment)(config, self.info)
    self.layout = pipeline.ShardLayout.create(config.data.num_shards, jax.process_index(),
                                              jax.process_count())
    self.train_data = pipeline.TrainData(self.dataset, config.data.train_split, config.batch_size,
                                         config.seed, self.layout)
    self.steps_per_epoch = self.train_data.steps_per_epoch
    if config.num_train_steps > 0:
      self.total_steps = int(config.num_train_steps)
    else:
      self.total_steps = max(1, math.ceil(config.num_epochs * self.steps_per_epoch))
    self.eval_every = self._every(config.eval_every_steps, "eval_every_steps")
    self.checkpoint_every = self._every(config.checkpoint_every_steps, "checkpoint_every_steps")
    self.batch_sharding = mesh_lib.batch_sharding(self.mesh)

    # ------------------------------------------------------ model and state
    accumulation = int(config.optimizer.accumulation_steps)
    if accumulation < 1 or (config.batch_size // mesh_lib.data_parallel_size(self.mesh)) % accumulation:
      raise UserError(f"optimizer.accumulation_steps={accumulation} must be >= 1 and divide the "
                      f"per-device batch {config.batch_size // mesh_lib.data_parallel_size(self.mesh)}")
    self.tx, self.schedule = optimizers.build(config.optimizer, self.total_steps)
    self.preprocess = transforms.build(config.data.preprocess)
    augment = transforms.build(config.data.augment)
    self.model = train_state.build_model(config, self.experiment)
    init_fn = train_state.make_init_fn(self.model, self.tx, self.info, self.preprocess,
                                       use_ema=config.ema_decay > 0)
    self.init_rng = jax.random.PRNGKey(config.seed)
    self.abstract_state = jax.eval_shape(init_fn, self.init_rng)
    self.state_shardings = sharding.state_shardings(
        self.abstract_state, self.mesh, config.sharding.rules, config.sharding.strict)
    self.init_state = jax.jit(init_fn, out_shardings=self.state_shardings)
    replicated = mesh_lib.replicated(self.mesh)
    self.train_step_fn = steps.make_train_step(
        self.model, self.experiment, self.tx, self.schedule, self.preprocess, augment,
        self.info.input_key, accumulation, config.ema_decay)
    self.train_step = jax.jit(  # (state, batch); the loop may feed it from on-device data
        self.train_step_fn,
        in_shardings=(self.state_shardings, self.batch_sharding),
        out_shardings=(self.state_shardings, replicated),
        donate_argnums=0)
    self.eval_step = jax.jit(
        steps.make_eval_step(self.model, self.experiment, self.preprocess, self.info.input_key),
        in_shardings=(self.state_shardings, self.batch_sharding), out_shardings=replicated)
    self.add_stats = jax.jit(lambda a, b: jax.tree.map(lambda x, y: x + y, a, b))
    self._stack = jax.jit(lambda rows: jax.tree.map(lambda *xs: jnp.stack(xs), *rows))
    self.last_eval = None  # (split, step, stats) of the latest evaluation, reused by the report

  def _every(self, value: int, key: str) -> int:
    """An `*_every_steps` knob in steps: -1 once per epoch, 0 only at the end."""
    if value == -1:
      return self.steps_per_epoch
    if value == 0:
      return self.total_steps
    if value < 0:
      raise UserError(f"{key}={value} is not a step count; use N > 0, -1 (once per epoch) or 0 "
                      "(only at the end)")
    return int(value)

  def metrics_to_host(self, history: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """`history` with its on-device metrics fetched: one copy per metric name, not one per step
    and name (at 100 steps a log, per-step copies cost small models ~1.5% of their throughput)."""
    pending = [i for i, (_, m) in enumerate(history)
               if any(isinstance(v, jax.Array) for v in m.values())]
    if not pending:
      return history
    stacked = jax.device_get(self._stack([history[i][1] for i in pending]))
    fetched = list(history)
    for row, i in enumerate(pending):
      fetched[i] = (history[i][0], {k: v[row] for k, v in stacked.items()})
    return fetched

  def on_device_data(self) -> bool:
    """Whether the train split is small enough to live on the devices (single process only)."""
    budget = self.config.data.on_device_max_mb * 2**20
    return jax.process_count() == 1 and 0 < self.train_data.nbytes() <= budget

  def train_feed(self, start_step: int):
    """(feed, jitted step, abstract feed args) for training from `start_step`; close the feed."""
    if not self.on_device_data():
      feed = pipeline.HostFeed(self.train_data, start_step, self.global_batch,
                               self.config.data.prefetch)
      return feed, self.train_step, (self.abstract_batch(),)
    replicated = mesh_lib.replicated(self.mesh)
    batch_sharding = self.batch_sharding
    step_fn = self.train_step_fn

    def on_device_step(state, arrays, epoch_rows):
      batch = pipeline.gather_batch(arrays, epoch_rows, state.step)
      return step_fn(state, jax.lax.with_sharding_constraint(batch, batch_sharding))

    step = jax.jit(on_device_step, in_shardings=(self.state_shardings, replicated, replicated),
                   out_shardings=(self.state_shardings, replicated), donate_argnums=0)
    feed = pipeline.OnDeviceFeed(self.train_data, start_step, replicated)
    rows_shape = (self.steps_per_epoch, self.config.batch_size)
    abstract = (jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                             feed.arrays),
                jax.ShapeDtypeStruct(rows_shape, np.int32, sharding=replicated))
    return feed, step, abstract

  def global_batch(self, batch):
    return pipeline.make_global(batch, self.batch_sharding)

  def abstract_batch(self):
    """The train batch as ShapeDtypeStructs (for compiling ahead of the data)."""
    local = self.train_data.batch(0)
    return {k: jax.ShapeDtypeStruct((self.config.batch_size,) + v.shape[1:], v.dtype,
                                    sharding=self.batch_sharding) for k, v in local.items()}

  def eval_statistics(self, state, split: str | None = None) -> dict[str, np.ndarray]:
    """The experiment's eval sums (loss, count, confusion...) over every example of `split`."""
    split = split or self.config.eval.split
    data = pipeline.EvalData(self.dataset, split, self.eval_batch_size, self.layout)
    stats = None
    for batch in pipeline.prefetch(data.batches(), self.global_batch, self.config.data.prefetch):
      batch_stats = self.eval_step(state, batch)
      stats = batch_stats if stats is None else self.add_stats(stats, batch_stats)
    stats = {k: np.asarray(v) for k, v in jax.device_get(stats).items()}
    if int(round(float(stats["count"]))) != data.num_examples:
      raise RuntimeError(f"evaluated {stats['count']} examples of {split!r}, expected "
                         f"{data.num_examples}")
    self.last_eval = (split, int(jax.device_get(state.step)), stats)
    return stats

  def evaluate(self, state, split: str | None = None) -> dict[str, float]:
    return self.experiment.summarize(self.eval_statistics(state, split))

  def run_record(self) -> dict:
    """Facts about the run that predict/export/report need besides the config."""
    return {
        "dataset": {"name": self.info.name, "input_key": self.info.input_key,
                    "input_shape": list(self.info.input_shape),
                    "input_dtype": np.dtype(self.info.input_dtype).name,
                    "num_classes": self.info.num_classes, "label_names": list(self.info.label_names),
                    "split_sizes": self.info.split_sizes,
                    "input_description": self.info.input_description},
        "total_steps": self.total_steps,
        "steps_per_epoch": self.steps_per_epoch,
        "param_count": train_state.param_count(self.abstract_state.params),
        "mesh": dict(self.mesh.shape),
        "process_count": jax.process_count(),
    }


def raise_if_diverged(history: list[tuple[int, dict]]) -> None:
  """The NaN guard: stops the run at the first non-finite loss or gradient norm."""
  for step, metrics in history:
    for name in ("loss", "grad_norm"):
      if name in metrics and not np.isfinite(metrics[name]):
        raise TrainingDiverged(f"training diverged: {name} is {metrics[name]} at step {step}; "
                               "the last good checkpoint is kept; lower the learning rate or "
                               "clip gradients (optimizer.grad_clip_norm)")


def train_and_evaluate(config, workdir: str, devices=None, stop_requested=None) -> dict:
  """Trains `config` in `workdir` (resuming from its latest checkpoint) and
  returns the final eval metrics."""
  # ---------------------------------------------------------------- set-up
  start_time = time.time()
  run = Run(config, workdir, devices)
  writer = MetricWriter(workdir, enabled=run.is_primary)
  progress = ProgressLine(run.total_steps, enabled=run.is_primary)
  if run.is_primary:
    (run.workdir / "config.json").write_text(config_lib.to_json(config))
    (run.workdir / "run.json").write_text(json.dumps(run.run_record(), indent=2))
  progress.print(mesh_lib.summary(run.mesh, config.batch_size))
  progress.print(f"model {config.model.name}: {run.run_record()['param_count']:,} parameters; "
                 f"data {run.info.name}: {run.steps_per_epoch} steps/epoch, "
                 f"{run.total_steps} steps in all")

  # ---------------------------------------------------------------- restore
  # The newest readable checkpoint of the workdir (an unreadable newest one is skipped with a
  # warning); else a fresh state, with config.init_from's parameters if set.
  checkpointer = checkpointing.Checkpointer.for_training(workdir, config)
  abstract = checkpointing.abstract_with_shardings(run.abstract_state, run.state_shardings)
  restored = checkpointer.restore_latest(abstract)
  resumed_meta: dict = {}
  if restored is not None:
    state, resumed_meta = restored.state, restored.meta
    progress.print(f"resumed from checkpoint at step {restored.step}")
  else:
    state = run.init_state(run.init_rng)
    if config.init_from:
      state, report = init_from.load_init_from(config.init_from, config.init_from_params,
                                               abstract, state)
      progress.print(report)
  start_step = int(jax.device_get(state.step))
  writer.truncate_after(start_step)

  # ---------------------------------------------------------------- compile
  device = run.mesh.devices.flat[0]
  feed, train_step, compile_seconds, flops, peak = None, None, 0.0, None, None
  if start_step < run.total_steps:  # an already complete run only evaluates
    feed, step_fn, abstract_feed_args = run.train_feed(start_step)
    t0 = time.perf_counter()
    train_step = step_fn.lower(abstract, *abstract_feed_args).compile()
    compile_seconds = time.perf_counter() - t0
    flops = perf.step_flops(train_step)
    peak, peak_source = perf.peak_flops(device, config.perf.peak_flops)
    progress.print(f"train step compiled in {compile_seconds:.1f}s; "
                   f"{(flops or 0) / 1e9:.3g} GFLOPs/step/device; peak {peak / 1e12:.3g} "
                   f"TFLOP/s per device ({peak_source})")
  profiler = perf.Profiler(workdir, config.perf.profile_start_step, config.perf.profile_num_steps,
                           enabled=run.is_primary)
  tokens_per_example = getattr(run.experiment, "tokens_per_example", None)

  # ---------------------------------------------------------------- train
  # metrics since the last log (a checkpoint taken between logs carries those of its steps)
  history = checkpointing.history_from_json(resumed_meta.get("pending_train_metrics"))
  last_log_time, last_log_step, input_wait = time.perf_counter(), start_step, 0.0
  eval_seconds = 0.0  # evaluation time inside the current log interval: not training time
  final_metrics: dict = dict(resumed_meta.get("metrics") or {})
  try:
    for step in range(start_step + 1, run.total_steps + 1):
      t_wait = time.perf_counter()
      feed_args = feed.next_args()
      input_wait += time.perf_counter() - t_wait
      profiler.before_step(step)
      with jax.transfer_guard("disallow"):
        state, metrics = train_step(state, *feed_args)
      profiler.after_step(step, state)
      history.append((step, metrics))

      is_last = step == run.total_steps
      must_save = is_last or step % run.checkpoint_every == 0
      stop = checkpointing.should_stop(step, stop_requested,
                                       exchange=must_save or step % config.log_every_steps == 0)
      if is_last or must_save or step % config.log_every_steps == 0:
        history = run.metrics_to_host(history)
        raise_if_diverged(history)
        elapsed = time.perf_counter() - last_log_time - eval_seconds
        n = step - last_log_step
        means = {k: float(np.mean([m[k] for _, m in history])) for k in history[-1][1]}
        means.update(examples_per_sec=n * config.batch_size / elapsed,
                     step_time_ms=1000 * elapsed / n, input_wait_fraction=input_wait / elapsed)
        if step == start_step + n:
          means["compile_seconds"] = compile_seconds
        if flops and peak:
          means["mfu"] = flops * n / elapsed / peak
        if tokens_per_example:
          means["tokens_per_sec"] = means["examples_per_sec"] * tokens_per_example
        memory = perf.memory_in_use(device)
        if memory is not None:
          means["memory_bytes"] = memory
        writer.write(step, "train", means)
        progress.update(step, {
            "loss": means["loss"], "ex/s": means["examples_per_sec"],
            "step": f"{means['step_time_ms']:.1f}ms",
            "wait": f"{100 * means['input_wait_fraction']:.0f}%",
            **({"MFU": f"{100 * means['mfu']:.1f}%"} if "mfu" in means else {})}, elapsed / n)
        history, last_log_time, last_log_step, input_wait = [], time.perf_counter(), step, 0.0
        eval_seconds = 0.0

      if is_last or step % run.eval_every == 0:
        t_eval = time.perf_counter()
        final_metrics = run.evaluate(state)
        eval_seconds += time.perf_counter() - t_eval
        writer.write(step, config.eval.split, final_metrics)
        progress.print(f"eval {config.eval.split} at step {step}: " +
                       ", ".join(f"{k} {v:.4f}" for k, v in final_metrics.items()))
      if must_save or stop:
        history = run.metrics_to_host(history)  # steps not logged yet (a stop)
        raise_if_diverged(history)
        evaluated = is_last or step % run.eval_every == 0
        checkpointer.save(step, state, meta={
            "metrics": final_metrics,
            "pending_train_metrics": checkpointing.history_to_json(history)},
            metrics=final_metrics if evaluated else None)
      if stop and not is_last:
        checkpointer.wait()
        progress.print(f"stopped at step {step}: checkpoint committed; run the same command "
                       "to continue")
        raise Preempted(step)
    checkpointer.wait()
    if start_step >= run.total_steps:  # the run was already complete: evaluate what it left
      final_metrics = run.evaluate(state)
      progress.print(f"eval {config.eval.split} at step {start_step}: " +
                     ", ".join(f"{k} {v:.4f}" for k, v in final_metrics.items()))
  finally:
    profiler.close()
    if feed is not None:
      feed.close()
    checkpointer.close()
    writer.close()

  progress.print(f"done: {run.total_steps} steps in {format_duration(time.time() - start_time)}")
  if run.is_primary:  # plots, confusion matrix and summary.md: a failure warns, the run stands
    try:
      from lepton_jax import report
      report.after_training(run, state, wall_seconds=time.time() - start_time)
    except Exception as e:  # noqa: BLE001
      progress.print(f"warning: could not write the plots/summary ({type(e).__name__}: {e}); "
                     f"run python -m lepton_jax.report {workdir}")
  return dict(final_metrics, step=run.total_steps)
