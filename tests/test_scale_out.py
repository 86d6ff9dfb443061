"""One train step on any mesh: the same numbers on 1 device and on 8."""

import re

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from lepton_jax import config_lib, metric_writers, train
from lepton_jax.errors import UserError

import task_testlib


def losses(config, workdir, devices, **mesh):
  config_lib.apply_overrides(config, [(f"mesh.{k}", str(v)) for k, v in mesh.items()])
  train.train_and_evaluate(config, workdir, devices=devices)
  return np.array([r["loss"] for r in metric_writers.read_metrics(workdir) if r["split"] == "train"])


@pytest.fixture
def twenty_steps(quick_config):
  config_lib.apply_overrides(quick_config, [
      ("num_train_steps", "20"), ("log_every_steps", "1"), ("eval_every_steps", "20"),
      ("checkpoint_every_steps", "20"), ("optimizer.warmup_steps", "2")])
  return quick_config


def test_data8_and_data2_fsdp4_match_one_device(twenty_steps, tmp_path):
  one = losses(twenty_steps.copy_and_resolve_references(), str(tmp_path / "one"), jax.devices()[:1],
               data=1, fsdp=1)
  data8 = losses(twenty_steps.copy_and_resolve_references(), str(tmp_path / "d8"), jax.devices(),
                 data=8, fsdp=1)
  fsdp = losses(twenty_steps.copy_and_resolve_references(), str(tmp_path / "fsdp"), jax.devices(),
                data=2, fsdp=4)
  assert len(one) == 20
  np.testing.assert_allclose(data8, one, rtol=1e-5)
  np.testing.assert_allclose(fsdp, one, rtol=1e-5)


def test_fsdp_shards_params_and_optimizer_state(quick_config, tmp_path):
  config_lib.apply_overrides(quick_config, [("mesh.data", "2"), ("mesh.fsdp", "4")])
  _, task = task_testlib.build(quick_config)
  state = task.init_state(task.init_rng)
  kernel = state.params["dense_0"]["kernel"]  # (8*4*4=128, 32): largest dim 128 over fsdp
  assert kernel.sharding.spec == P("fsdp", None)
  assert {s.data.shape for s in kernel.addressable_shards} == {(kernel.shape[0] // 4, kernel.shape[1])}
  mu = state.opt_state[0].mu["dense_0"]["kernel"]
  assert mu.sharding.spec == P("fsdp", None)
  assert {s.data.shape for s in mu.addressable_shards} == {(kernel.shape[0] // 4, kernel.shape[1])}
  head_bias = state.params["head"]["bias"]  # 10 does not divide over 4: replicated
  assert head_bias.sharding.spec == P()


def test_tensor_parallel_rule_splits_dense_output_dim(quick_config, tmp_path):
  config_lib.apply_overrides(quick_config, [
      ("mesh.data", "4"), ("mesh.model", "2"),
      ("sharding.rules", "((r'dense_0/kernel', ',model'), (r'dense_0/bias', 'model'), ('.*', 'replicated'))")])
  dataset, task = task_testlib.build(quick_config)
  state = task.init_state(task.init_rng)
  kernel = state.params["dense_0"]["kernel"]
  assert kernel.sharding.spec == P(None, "model")
  assert {s.data.shape for s in kernel.addressable_shards} == {(kernel.shape[0], kernel.shape[1] // 2)}
  state, metrics = task.train_step(state, task_testlib.first_batch(task, dataset))
  assert np.isfinite(float(metrics["loss"]))
  assert state.params["dense_0"]["kernel"].sharding.spec == P(None, "model")


@pytest.mark.parametrize("overrides,message", [
    ([("batch_size", "60"), ("mesh.data", "8")], "batch_size=60 is not divisible by the 8 data-parallel"),
    ([("mesh.data", "3")], "mesh data=3 x fsdp=1 x model=1 = 3 devices, but there are 8"),
    ([("mesh.data", "-1"), ("mesh.fsdp", "3")], "cannot fill 8 devices"),
    ([("sharding.rules", "(('.*', 'fsdp,tensor'),)")], "'tensor' is not a mesh axis"),
    ([("sharding.rules", "(('head', 'replicated'),)"), ("sharding.strict", "true")],
     "no sharding rule matches params/conv_0/bias"),
])
def test_bad_mesh_input_fails_before_compiling(quick_config, tmp_path, overrides, message):
  config_lib.apply_overrides(quick_config, overrides)
  with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
    task_testlib.build(quick_config)


def test_bf16_compute_keeps_f32_params(quick_config, tmp_path):
  config_lib.apply_overrides(quick_config, [("dtype", "bfloat16")])
  dataset, task = task_testlib.build(quick_config, devices=jax.devices()[:1])
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(task.abstract_state.params))
  hlo = task.train_step.lower(task.abstract_state, task_testlib.first_batch(task, dataset)).as_text()
  # The dense layers' matrix products run in bf16 (the first conv may be lowered to shifted
  # multiply-adds on CPU, see lepton_jax/kernels/conv.py).
  assert re.search(r"dot_general.*tensor<[0-9x]*xbf16>", hlo), "no bf16 matrix product in the step"
  final = train.train_and_evaluate(quick_config, str(tmp_path / "run"), devices=jax.devices()[:1])
  assert final["accuracy"] > 0.3  # learns (chance is 0.1); the full-length figure is in README
