"""Checkpoints: retention, atomicity, unreadable and incompatible checkpoints,
init_from, divergence, and restoring with Orbax alone."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import checkpoint_testlib as lib
import task_testlib
from lepton_jax import main, train
from lepton_jax.checkpoint import init_from, manager as checkpointing
from lepton_jax.errors import UserError
from lepton_jax.train_state import TrainState

# ------------------------------------------------------- checkpoints of a toy state


def toy_state(step: int, hidden: int = 64, extra: bool = False) -> TrainState:
  kernel = jax.random.normal(jax.random.PRNGKey(step), (64, hidden))  # incompressible
  params = {"dense": {"kernel": kernel,
                      "bias": jnp.arange(hidden, dtype=jnp.float32) * step}}
  if extra:
    params["extra"] = {"kernel": jnp.ones((2, 2))}
  return TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                    opt_state={"mu": jax.tree.map(jnp.zeros_like, params)}, model_state={},
                    rng=jnp.asarray([0, step], jnp.uint32))


def abstract_of(state):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), state)


def save_steps(workdir, steps, metrics=None, **options):
  checkpointer = checkpointing.Checkpointer(str(workdir), cleanup_tmp=True, **options)
  for step in steps:
    checkpointer.save(step, toy_state(step), metrics=(metrics or {}).get(step))
  checkpointer.close()


def test_keeps_the_last_k_and_the_best_k_also_across_restarts(tmp_path):
  accuracy = {1: 0.5, 2: 0.9, 3: 0.6, 5: 0.7, 6: 0.4}  # step 4 was not evaluated
  save_steps(tmp_path, range(1, 7), {s: {"accuracy": a} for s, a in accuracy.items()},
             keep_last=2, keep_best=1)
  assert lib.checkpoint_steps(tmp_path) == [2, 5, 6]
  save_steps(tmp_path, [7], {7: {"accuracy": 0.95}}, keep_last=2, keep_best=1)  # a new process
  assert lib.checkpoint_steps(tmp_path) == [6, 7]

  loss = {1: 0.3, 2: 0.1, 3: 0.2, 4: 0.5}
  save_steps(tmp_path / "min", range(1, 5), {s: {"loss": v} for s, v in loss.items()},
             keep_last=1, keep_best=2, best_metric="loss", best_mode="min")
  assert lib.checkpoint_steps(tmp_path / "min") == [2, 3, 4]


def test_a_complete_checkpoint_exists_at_every_moment(tmp_path):
  """keep_last=1: the previous checkpoint goes only once the next one has committed."""
  directory = tmp_path / "checkpoints"
  seen, done = [], threading.Event()

  def watch():
    while not done.is_set():
      seen.append(len(lib.checkpoint_steps(tmp_path)) if directory.exists() else 0)
      time.sleep(0.001)

  checkpointer = checkpointing.Checkpointer(str(tmp_path), keep_last=1, keep_best=0)
  checkpointer.save(1, toy_state(1, hidden=4096))
  checkpointer.wait()
  watcher = threading.Thread(target=watch)
  watcher.start()
  for step in range(2, 8):
    checkpointer.save(step, toy_state(step, hidden=4096))  # 1 MB params, async
  checkpointer.wait()
  time.sleep(0.05)
  done.set()
  watcher.join()
  checkpointer.close()
  assert len(seen) > 10 and min(seen) >= 1, "no complete checkpoint at some moment"
  assert lib.checkpoint_steps(tmp_path) == [7]


def _largest_data_file(step_dir):
  files = [os.path.join(d, f) for d, _, names in os.walk(step_dir / "state")
           for f in names if os.path.basename(d) == "d"]
  return max(files, key=os.path.getsize)


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _garble(path):
  with open(path, "rb") as f:
    data = bytearray(f.read())
  third = len(data) // 3
  data[third:2 * third] = bytes(b ^ 0x5A for b in data[third:2 * third])
  with open(path, "wb") as f:
    f.write(bytes(data))


CORRUPTIONS = {
    "truncated data file": lambda d: _truncate(_largest_data_file(d)),
    "garbled data file": lambda d: _garble(_largest_data_file(d)),  # caught by the checksums
    "garbled _METADATA": lambda d: _garble(d / "state" / "_METADATA"),
    "truncated meta": lambda d: _truncate(d / "meta" / "metadata"),
    "missing state": lambda d: shutil.rmtree(d / "state"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_an_unreadable_latest_checkpoint_is_skipped_for_the_previous_one(tmp_path, corruption,
                                                                          capsys):
  save_steps(tmp_path, [1, 2, 3])
  CORRUPTIONS[corruption](tmp_path / "checkpoints" / "3")
  checkpointer = checkpointing.Checkpointer(str(tmp_path), cleanup_tmp=True)
  restored = checkpointer.restore_latest(abstract_of(toy_state(0)))
  assert restored.step == 2
  np.testing.assert_array_equal(restored.state.params["dense"]["kernel"],
                                toy_state(2).params["dense"]["kernel"])
  warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
  assert "checkpoints/3 is unreadable" in warnings[0] and "trying the one before it" in warnings[0]
  # The unreadable one is moved aside, not deleted; the good ones are untouched.
  assert lib.checkpoint_steps(tmp_path) == [1, 2]
  assert [n.split("-")[0] for n in os.listdir(tmp_path / "checkpoints_corrupt")] == ["3"]
  # Training redoes step 3 and saves it again.
  checkpointer.save(3, toy_state(3))
  checkpointer.wait()
  assert checkpointer.restore_latest(abstract_of(toy_state(0))).step == 3
  checkpointer.close()


def test_no_readable_checkpoint_is_a_user_error(tmp_path):
  save_steps(tmp_path, [1])
  _truncate(_largest_data_file(tmp_path / "checkpoints" / "1"))
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  with pytest.raises(UserError, match="no readable checkpoint"):
    checkpointer.restore_latest(abstract_of(toy_state(0)))
  checkpointer.close()
  assert lib.checkpoint_steps(tmp_path) == [1]  # nothing was moved or deleted


@pytest.mark.parametrize("model,message", [
    (dict(hidden=32), r"params/dense/bias is float32\[64\] there but float32\[32\] in this model"),
    (dict(extra=True), r"it has no params/extra/kernel"),
])
def test_a_checkpoint_of_another_model_names_the_first_mismatch(tmp_path, model, message):
  save_steps(tmp_path, [1])
  checkpointer = checkpointing.Checkpointer(str(tmp_path))
  with pytest.raises(UserError, match=message) as e:
    checkpointer.restore_latest(abstract_of(toy_state(0, **model)))
  checkpointer.close()
  assert "fresh --workdir" in str(e.value) and "init_from" in str(e.value)
  assert "\n" not in str(e.value)
  assert lib.checkpoint_steps(tmp_path) == [1]


# ------------------------------------------------------------ with a trained run


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
  """A complete 10-step tiny run (hidden layer 16)."""
  workdir = str(tmp_path_factory.mktemp("trained"))
  train.train_and_evaluate(lib.tiny_config(data_dir, num_train_steps=10, eval_every_steps=10),
                           workdir, devices=jax.devices()[:1])
  return workdir


def test_cli_rejects_a_workdir_of_another_model_with_exit_2(trained, data_dir, tmp_path, capsys):
  workdir = tmp_path / "w"
  shutil.copytree(trained, workdir)
  handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    with pytest.raises(SystemExit) as e:
      main.run(lib.cli_args(workdir, data_dir, num_train_steps=10, model__hidden_sizes="(32,)",
                            mesh__data=1, mesh__fsdp=8))
  finally:
    for s, h in handlers.items():
      signal.signal(s, h)
  err = capsys.readouterr().err.strip().splitlines()
  assert e.value.code == 2
  assert err[-1].startswith("error: checkpoint ") and "params/dense_0/bias" in err[-1], err
  assert "init_from" in err[-1]
  assert lib.checkpoint_steps(workdir) == lib.checkpoint_steps(trained)


def _task(config):
  return task_testlib.build(config, devices=jax.devices()[:1])[1]


def test_init_from_loads_the_matching_params_and_initialises_the_rest(trained, data_dir, tmp_path,
                                                                      capsys):
  config = lib.tiny_config(data_dir, seed=7, num_train_steps=5, checkpoint_every_steps=5,
                           optimizer__warmup_steps=2,
                           optimizer__learning_rate=1e-4, init_from=trained,
                           init_from_params="^params/(?!head/)")
  task = _task(config)
  abstract = task.abstract_state
  fresh = task.init_state(task.init_rng)
  state, report = init_from.load_init_from(trained, "^params/(?!head/)", abstract, fresh)
  _, source = lib.read_state(trained)
  for name in ("conv_0", "dense_0"):
    for leaf in ("kernel", "bias"):
      np.testing.assert_array_equal(state.params[name][leaf],
                                    source[f"['params']['{name}']['{leaf}']"])
  np.testing.assert_array_equal(state.params["head"]["kernel"], fresh.params["head"]["kernel"])
  assert not np.array_equal(fresh.params["head"]["kernel"], source["['params']['head']['kernel']"])
  assert int(state.step) == 0 and "loaded 4 of 6 parameter arrays" in report

  # End to end: a fresh run at step 0 that reports what it loaded.
  workdir = str(tmp_path / "finetune")
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  out = capsys.readouterr().out
  assert "init_from " in out and "loaded 4 of 6 parameter arrays" in out
  assert [r["step"] for r in lib.metric_rows(workdir) if r["split"] == "train"] == [5]
  # A step dir works too.
  step_dir = os.path.join(trained, "checkpoints", "10")
  state, report = init_from.load_init_from(step_dir, ".*", abstract, fresh)
  assert "loaded 6 of 6" in report


def test_init_from_errors_are_clear(trained, data_dir, tmp_path):
  abstract = _task(lib.tiny_config(data_dir)).abstract_state
  load = lambda path, regex=".*", a=abstract: init_from.load_init_from(path, regex, a, None)
  with pytest.raises(UserError, match="does not exist"):
    load(str(tmp_path / "nowhere"))
  incomplete = tmp_path / "incomplete"
  (incomplete / "checkpoints" / "5.orbax-checkpoint-tmp-123" / "state").mkdir(parents=True)
  with pytest.raises(UserError, match="no complete checkpoint"):
    load(str(incomplete))
  with pytest.raises(UserError, match="matches no parameter"):
    load(trained, "^nothing")
  abstract32 = _task(lib.tiny_config(data_dir, model__hidden_sizes="(32,)")).abstract_state
  with pytest.raises(UserError, match=r"params/dense_0/bias is float32\[16\] in .* but "
                                      r"float32\[32\] in this model"):
    load(trained, ".*", abstract32)


def test_divergence_stops_before_saving_and_keeps_the_last_good_checkpoint(trained, data_dir,
                                                                          tmp_path):
  workdir = str(tmp_path / "w")
  shutil.copytree(trained, workdir)
  _, before = lib.read_state(workdir, 10)
  config = lib.tiny_config(data_dir, num_train_steps=40, checkpoint_every_steps=1,
                           optimizer__learning_rate=1e30)
  with pytest.raises(train.TrainingDiverged, match=r"(loss|grad_norm) is \S+ at step \d+") as e:
    train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  diverged_at = int(str(e.value).split(" at step ")[1].split(";")[0])
  steps = lib.checkpoint_steps(workdir)
  assert steps[-1] < diverged_at
  for step in steps:  # no non-finite state was saved
    assert all(np.isfinite(v).all() for v in lib.read_state(workdir, step)[1].values())
  lib.assert_states_equal(lib.read_state(workdir, 10)[1], before)


def test_a_checkpoint_restores_with_orbax_alone(trained, tmp_path):
  script = (
      "import sys, numpy as np, orbax.checkpoint as ocp, jax\n"
      "state = ocp.StandardCheckpointer().restore(sys.argv[1])\n"
      "assert 'lepton_jax' not in sys.modules, 'lepton_jax was imported'\n"
      "flat = jax.tree_util.tree_flatten_with_path(state['params'])[0]\n"
      "np.savez(sys.argv[2], **{jax.tree_util.keystr(p): np.asarray(v) for p, v in flat})\n")
  out = tmp_path / "params.npz"
  item = os.path.join(trained, "checkpoints", "10", "state")
  subprocess.run([sys.executable, "-c", script, item, str(out)], check=True, timeout=300,
                 env=lib.subprocess_env(), cwd=str(tmp_path))
  _, state = lib.read_state(trained, 10)
  params = dict(np.load(out))
  assert sorted(params) == sorted(k[len("['params']"):] for k in state if k.startswith("['params']"))
  for key, value in params.items():
    np.testing.assert_array_equal(value, state["['params']" + key])
