"""The data-free core every entry point builds the same way.

    task = task.build(config, info, op_specs)      # info: the dataset's description, no arrays

From the config and a dataset's description (DatasetInfo: shapes, dtypes, classes, split sizes)
`build` makes the experiment, the model, the optimizer and its schedule, the mesh, the abstract
train state and its shardings, and the jitted init, train and eval steps. Train, eval, sweep,
predict, export and bench all start here; none rebuilds any part of it. A Task reads no data and
writes nothing: the numbers it needs from the data (dataset statistics in the op specs) are
resolved beforehand and passed in.
"""

import contextlib
import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax

from lepton_jax import config_lib, flops, modeling, optimizers, registry, run_record, steps
from lepton_jax import train_state
from lepton_jax.data import order, transforms
from lepton_jax.data.info import DatasetInfo
from lepton_jax.data.statistics import OpSpecs
from lepton_jax.errors import UserError, first_line
from lepton_jax.experiments.base import Experiment
from lepton_jax.parallel import mesh as mesh_lib, sharding


@dataclasses.dataclass(frozen=True)
class Task:
  """What a run computes with. Every array-valued field is abstract or a jitted function."""

  config: ml_collections.ConfigDict
  info: DatasetInfo
  op_specs: OpSpecs
  mesh: jax.sharding.Mesh
  layout: order.ShardLayout  # which data shards this process reads
  experiment: Experiment
  model: modeling.LinenModel
  tx: optax.GradientTransformation
  schedule: Callable
  preprocess: transforms.Op
  augment: transforms.Op
  total_steps: int
  steps_per_epoch: int
  abstract_state: Any  # TrainState of ShapeDtypeStructs carrying their shardings
  init_state: Callable  # jitted: rng -> TrainState, created sharded
  train_step_fn: Callable  # (state, batch) -> (state, metrics), not jitted
  train_step: Callable  # the same, jitted with shardings, the state donated
  eval_step: Callable  # jitted: (state, batch) -> eval statistics summed over the batch

  @property
  def batch_sharding(self) -> jax.sharding.NamedSharding:
    return mesh_lib.batch_sharding(self.mesh)

  @property
  def replicated(self) -> jax.sharding.NamedSharding:
    return mesh_lib.replicated(self.mesh)

  @property
  def state_shardings(self):
    return jax.tree.map(lambda a: a.sharding, self.abstract_state)

  @property
  def eval_batch_size(self) -> int:
    return self.config.eval.batch_size or self.config.batch_size

  def tracing_context(self):
    """Where the steps are traced: on TPU inside the mesh, so that attention='auto' can run the
    Pallas splash kernel per shard (elsewhere nothing needs it)."""
    if self.mesh.devices.flat[0].platform == "tpu":
      return jax.set_mesh(self.mesh)
    return contextlib.nullcontext()

  @property
  def init_rng(self) -> jax.Array:
    return jax.random.PRNGKey(self.config.seed)

  @property
  def param_count(self) -> int:
    return train_state.param_count(self.abstract_state.params)

  def every(self, key: str) -> int:
    """An `*_every_steps` knob of the config in steps: -1 once per epoch, 0 only at the end."""
    value = int(self.config[key])
    if value == -1:
      return self.steps_per_epoch
    if value == 0:
      return self.total_steps
    if value < 0:
      raise UserError(f"{key}={value} is not a step count; use N > 0, -1 (once per epoch) or 0 "
                      "(only at the end)")
    return value

  @functools.cached_property
  def train_flops(self) -> tuple[float, tuple[str, ...]]:
    """(model FLOPs of one train step per device, ops the count cannot see).

    Counted from the traced forward pass of the global batch (3x: forward and backward), so the
    figure is the same on every backend, unlike a compiled program's cost analysis, which misses
    library calls (cuBLAS, cuDNN) on GPUs. Fused attention kernels are counted as the XLA
    implementation that computes the same products."""
    model = self.model.replace(attention="xla") if self.model.has_field("attention") else self.model
    state, preprocess = self.abstract_state, self.preprocess
    x = jax.ShapeDtypeStruct((self.config.batch_size,) + tuple(self.info.input_shape),
                             np.dtype(self.info.input_dtype))

    def forward(params, model_state, x):
      return model.apply(params, model_state, preprocess(x, jax.random.PRNGKey(0)), train=False)[0]

    count = flops.count(forward, state.params, state.model_state, x)
    return flops.TRAIN_FLOPS_PER_FORWARD * count.flops / self.mesh.size, tuple(count.opaque)

  def run_record(self) -> dict:
    """Facts predict, export, eval and report need besides the config (run.json)."""
    return {
        "dataset": self.info.to_dict(),
        "op_specs": self.op_specs.to_dict(),
        "total_steps": self.total_steps,
        "steps_per_epoch": self.steps_per_epoch,
        "param_count": self.param_count,
        "mesh": dict(self.mesh.shape),
        "process_count": jax.process_count(),
    }


def build(config, info: DatasetInfo, op_specs: OpSpecs | None = None, *, devices=None,
          mesh: jax.sharding.Mesh | None = None) -> Task:
  """The Task of `config` for a dataset described by `info` (see the module docstring)."""
  config_lib.validate(config)
  op_specs = op_specs or OpSpecs.of_config(config.data)
  mesh = mesh or mesh_lib.make_mesh(config.mesh, devices)
  mesh_lib.check_batch(config.batch_size, mesh)
  mesh_lib.check_batch(config.eval.batch_size or config.batch_size, mesh, "eval.batch_size")
  layout = order.ShardLayout.create(config.data.num_shards, jax.process_index(),
                                    jax.process_count())
  steps_per_epoch = order.steps_per_epoch(info.split_size(config.data.train_split), layout,
                                          config.batch_size, config.data.train_split)
  total_steps = _total_steps(config, steps_per_epoch)
  experiment = _experiment(config, info)
  model = modeling.build_model(config, experiment, mesh.devices.flat[0].platform)
  tx, schedule = optimizers.build(config.optimizer, total_steps)
  preprocess, augment = transforms.build(op_specs.preprocess), transforms.build(op_specs.augment)
  abstract_state, init_state = _state(config, info, mesh, model, tx, preprocess)
  shardings = jax.tree.map(lambda a: a.sharding, abstract_state)
  train_step_fn = steps.make_train_step(
      model, experiment, tx, schedule, preprocess, augment, info.input_key,
      _accumulation(config, mesh), config.ema_decay)
  replicated = mesh_lib.replicated(mesh)
  batch_sharding = mesh_lib.batch_sharding(mesh)
  train_step = jax.jit(train_step_fn, in_shardings=(shardings, batch_sharding),
                       out_shardings=(shardings, replicated), donate_argnums=0)
  eval_step = jax.jit(steps.make_eval_step(model, experiment, preprocess, info.input_key),
                      in_shardings=(shardings, batch_sharding), out_shardings=replicated)
  return Task(config=config, info=info, op_specs=op_specs, mesh=mesh, layout=layout,
              experiment=experiment, model=model, tx=tx, schedule=schedule,
              preprocess=preprocess, augment=augment, total_steps=total_steps,
              steps_per_epoch=steps_per_epoch, abstract_state=abstract_state,
              init_state=init_state, train_step_fn=train_step_fn, train_step=train_step,
              eval_step=eval_step)


def from_workdir(workdir: str, devices=None) -> Task:
  """The Task of a trained workdir, from its config.json and run.json alone (no data is read):
  what predict and export restore checkpoints into. Default devices: the first local one."""
  config = run_record.read_config(workdir)
  record = run_record.read(workdir)
  info = run_record.dataset_info(record)
  if info.input_shape is None:
    raise UserError(f"the input shape of {workdir}'s model is unknown (run.json has none)")
  return build(config, info, run_record.op_specs(record, config),
               devices=devices if devices is not None else jax.local_devices()[:1])


def _total_steps(config, steps_per_epoch: int) -> int:
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def _experiment(config, info: DatasetInfo) -> Experiment:
  cls = registry.get("experiment", config.experiment)
  if not (isinstance(cls, type) and issubclass(cls, Experiment)):
    raise UserError(f"experiment {config.experiment!r} is not a subclass of "
                    "lepton_jax.experiments.base.Experiment; derive it from that class (or from "
                    "Classification / LanguageModel)")
  return cls(config, info)


def _accumulation(config, mesh) -> int:
  accumulation = int(config.optimizer.accumulation_steps)
  per_device = config.batch_size // mesh_lib.data_parallel_size(mesh)
  if accumulation < 1 or per_device % accumulation:
    raise UserError(f"optimizer.accumulation_steps={accumulation} must be >= 1 and divide the "
                    f"per-device batch {per_device}")
  return accumulation


def _state(config, info, mesh, model, tx, preprocess):
  """(abstract state with shardings, jitted sharded init) of the train state."""
  def init_fn(rng):
    # One example shaped and typed as the model will see it, after preprocessing.
    x = jax.numpy.zeros((1,) + tuple(info.input_shape), np.dtype(info.input_dtype))
    x = preprocess(x, jax.random.PRNGKey(0))
    return train_state.make_init_fn(model, tx, x, use_ema=config.ema_decay > 0)(rng)

  try:
    shapes = jax.eval_shape(init_fn, jax.random.PRNGKey(config.seed))
  except ValueError as e:  # a model's own argument checks (models raise ValueError for those)
    raise UserError(f"config.model ({config.model.name}): {first_line(e)}") from e
  shardings = sharding.state_shardings(shapes, mesh, config.sharding.rules, config.sharding.strict)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          shapes, shardings)
  return abstract, jax.jit(init_fn, out_shardings=shardings)
