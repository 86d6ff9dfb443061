"""lepton_jax.export: the StableHLO artifact and the SavedModel, reloaded in processes that
never import lepton_jax, equal the JAX model on batch sizes the export never saw."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lepton_jax import config_lib, export, predict, train
from lepton_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
  config = config_lib.load(os.path.join(REPO, "configs", "quickstart.py"))
  config_lib.apply_overrides(config, [
      ("data.data_dir", data_dir), ("num_train_steps", "20"), ("log_every_steps", "10"),
      ("eval_every_steps", "20"), ("checkpoint_every_steps", "20"), ("optimizer.warmup_steps", "5"),
      ("model.conv_features", "(8, 8)"), ("model.pool", "(False, True)"), ("model.hidden_sizes", "(32,)")])
  workdir = str(tmp_path_factory.mktemp("export_run"))
  train.train_and_evaluate(config, workdir)
  out = str(tmp_path_factory.mktemp("exported"))
  assert export.main(["--workdir", workdir, "--out", out]) == 0
  return workdir, out


# Run in fresh interpreters: only jax (or only tensorflow), never lepton_jax.
JAX_LOADER = textwrap.dedent("""
    import sys, numpy as np, jax
    exp = jax.export.deserialize(bytearray(open(sys.argv[1] + "/model.jax_export", "rb").read()))
    outs = {}
    for name in sys.argv[2:]:
      outs[name] = np.asarray(exp.call(np.load(name)))
    assert "lepton_jax" not in sys.modules, "the exported model must load without lepton_jax"
    np.savez(sys.argv[1] + "/jax_outputs.npz", *[outs[n] for n in sys.argv[2:]])
""")
TF_LOADER = textwrap.dedent("""
    import sys, numpy as np, tensorflow as tf
    model = tf.saved_model.load(sys.argv[1] + "/saved_model")
    serve = model.signatures["serving_default"]
    outs = [serve(image=tf.constant(np.load(n)))["probabilities"].numpy() for n in sys.argv[2:]]
    assert "lepton_jax" not in sys.modules  # (tensorflow itself imports jax when installed)
    np.savez(sys.argv[1] + "/tf_outputs.npz", *outs)
""")


def _run(script, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("PYTHONPATH", None)
  # cwd outside the repository: lepton_jax is not importable from the current directory there.
  r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                     env=env, timeout=300, cwd="/")
  assert r.returncode == 0, r.stderr[-3000:]


def test_artifacts_reload_without_lepton_jax_and_match(exported, tmp_path):
  workdir, out = exported
  meta = json.load(open(os.path.join(out, "metadata.json")))
  assert meta["input"] == {"name": "image", "shape": [None, 8, 8, 1], "dtype": "uint8",
                           "description": meta["input"]["description"]}
  assert meta["output"]["shape"] == [None, 10] and meta["label_names"] == [str(i) for i in range(10)]
  assert meta["preprocessing"]["device_ops"] == ["normalize(mean=0.5, std=0.5)"]
  assert meta["verification"]["saved_model_max_abs_diff"] < 1e-5
  assert set(meta["platforms"]) == {"cpu", "cuda", "tpu"}

  rng = np.random.default_rng(0)
  from lepton_jax import registry
  config = config_lib.from_json_file(os.path.join(workdir, "config.json"))
  real = registry.get("dataset", "digits")(config.data).read("test")["image"][:5]
  batches = {"real5": real, "random1": rng.integers(0, 256, (1, 8, 8, 1), dtype=np.uint8),
             "random17": rng.integers(0, 256, (17, 8, 8, 1), dtype=np.uint8)}
  files = []
  for name, x in batches.items():
    files.append(str(tmp_path / f"{name}.npy"))
    np.save(files[-1], x)
  work = str(tmp_path)
  shutil.copy(os.path.join(out, export.JAX_EXPORT_FILE), work)
  shutil.copytree(os.path.join(out, export.SAVED_MODEL_DIR), os.path.join(work, export.SAVED_MODEL_DIR))
  _run(JAX_LOADER, work, *files)
  _run(TF_LOADER, work, *files)
  jax_out = np.load(os.path.join(work, "jax_outputs.npz"))
  tf_out = np.load(os.path.join(work, "tf_outputs.npz"))
  p = predict.load(workdir)
  for i, x in enumerate(batches.values()):
    reference = p.predict(x)  # the JAX model, as lepton_jax runs it
    assert jax_out[f"arr_{i}"].shape == reference.shape == tf_out[f"arr_{i}"].shape
    np.testing.assert_allclose(jax_out[f"arr_{i}"], reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(tf_out[f"arr_{i}"], reference, atol=1e-5, rtol=0)


def test_unknown_input_shape_is_a_one_line_error(exported, tmp_path):
  workdir, _ = exported
  broken = tmp_path / "broken"
  broken.mkdir()
  record = json.load(open(os.path.join(workdir, "run.json")))
  record["dataset"]["input_shape"] = None
  (broken / "run.json").write_text(json.dumps(record))
  shutil.copy(os.path.join(workdir, "config.json"), broken)
  with pytest.raises(UserError, match="input shape of the model in .* is unknown") as e:
    export.main(["--workdir", str(broken), "--out", str(tmp_path / "out")])
  assert "\n" not in str(e.value)
  with pytest.raises(UserError, match="no checkpoint in"):
    record["dataset"]["input_shape"] = [8, 8, 1]
    (broken / "run.json").write_text(json.dumps(record))
    export.main(["--workdir", str(broken), "--out", str(tmp_path / "out")])
