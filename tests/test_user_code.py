"""A user's own model, outside the repository, through every entry point: a config lists its
module in `imports`, and train, eval, predict and export of the workdir find it from any
directory, with the module on PYTHONPATH."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import checkpoint_testlib as lib

MODULE = textwrap.dedent('''
    import flax.linen as nn

    from lepton_jax import registry


    @registry.register("model", "ext_two_layer")
    class TwoLayer(nn.Module):
      """A user's model: flatten, Dense(width), Dense(num_classes)."""

      num_classes: int
      width: int = 16

      @nn.compact
      def __call__(self, x, *, train: bool = False):
        x = nn.relu(nn.Dense(self.width)(x.reshape((x.shape[0], -1))))
        return nn.Dense(self.num_classes)(x)
    ''')

CONFIG = textwrap.dedent('''
    from lepton_jax.config_defaults import base_config


    def get_config(arg=None):
      config = base_config()
      config.imports = ("ext_models",)  # the config file itself never imports it
      config.model.name = "ext_two_layer"
      config.model.width = 16
      config.data.name = "digits"
      config.data.data_dir = {data_dir!r}
      config.batch_size = 32
      config.num_train_steps = 8
      config.log_every_steps = 4
      config.eval_every_steps = 8
      config.checkpoint_every_steps = 8
      config.perf.peak_flops = 1e11
      return config
    ''')


def _run(args, cwd, env):
  result = subprocess.run([sys.executable, "-m"] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
  return result.stdout


def test_a_users_model_works_in_every_entry_point(data_dir, tmp_path):
  project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
  project.mkdir()
  elsewhere.mkdir()
  (project / "ext_models.py").write_text(MODULE)
  (project / "ext.py").write_text(CONFIG.format(data_dir=data_dir))
  env = dict(lib.subprocess_env(), PYTHONPATH=str(project), JAX_PLATFORMS="cpu")
  workdir = str(tmp_path / "run")
  _run(["lepton_jax.main", "--config", str(project / "ext.py"), "--workdir", workdir],
       elsewhere, env)
  assert json.load(open(os.path.join(workdir, "config.json")))["imports"] == ["ext_models"]
  out = _run(["lepton_jax.main", "--config", str(project / "ext.py"), "--workdir", workdir,
              "--mode=eval"], elsewhere, env)
  assert "accuracy" in out
  np_file = tmp_path / "digit.npy"

  np.save(np_file, np.zeros((8, 8, 1), np.uint8))
  out = _run(["lepton_jax.predict", "--workdir", workdir, str(np_file), "--json"], elsewhere, env)
  assert len(json.loads(out)["predictions"]) == 1
  _run(["lepton_jax.export", "--workdir", workdir, "--out", str(tmp_path / "export"),
        "--no_saved_model", "--platforms", "cpu"], elsewhere, env)
  assert (tmp_path / "export" / "model.jax_export").exists()
