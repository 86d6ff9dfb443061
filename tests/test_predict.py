"""lepton_jax.predict: the Python API, input files, errors, binary thresholds, LM sampling,
and (the acceptance test) agreement with --mode=eval on 1,000 MNIST test images as PNGs."""

import json
import os
import subprocess
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from lepton_jax import config_lib, predict, sampling, train
from lepton_jax.errors import UserError

import task_testlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(os.path.dirname(REPO), "shared", "data", "mnist")


def _config(name, overrides):
  config = config_lib.load(os.path.join(REPO, "configs", name))
  config_lib.apply_overrides(config, overrides)
  return config


@pytest.fixture(scope="module")
def digits_run(data_dir, tmp_path_factory):
  config = _config("quickstart.py", [
      ("data.data_dir", data_dir), ("num_train_steps", "30"), ("log_every_steps", "10"),
      ("eval_every_steps", "30"), ("checkpoint_every_steps", "30"), ("optimizer.warmup_steps", "5"),
      ("model.conv_features", "(8,)"), ("model.pool", "(True,)"), ("model.hidden_sizes", "(32,)")])
  workdir = str(tmp_path_factory.mktemp("digits_run"))
  train.train_and_evaluate(config, workdir)
  return config, workdir


@pytest.fixture(scope="module")
def predictor(digits_run):
  return predict.load(digits_run[1])


@pytest.fixture(scope="module")
def test_digits(digits_run):
  from lepton_jax import registry
  config = digits_run[0]
  return registry.get("dataset", "digits")(config.data).read("test")


# ---------------------------------------------------------------- the Python API

def test_predict_matches_the_eval_step(digits_run, predictor, test_digits):
  """predict() = host transform + preprocess + model + softmax, as the eval step computes it."""
  images, labels = test_digits["image"][:50], test_digits["label"][:50]
  probs = predictor.predict(images)
  assert probs.shape == (50, 10) and probs.dtype == np.float32
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
  x = predictor.preprocess(jnp.asarray(images), jax.random.PRNGKey(0))
  logits, _ = predictor.model.apply(predictor.variables["params"], predictor.variables["model_state"],
                                    x, train=False)
  np.testing.assert_allclose(probs, jax.nn.softmax(logits), atol=1e-6)
  # Chunking and padding do not change anything; neither does a missing channel axis.
  np.testing.assert_allclose(predictor.predict(images, batch_size=7), probs, atol=1e-6)
  np.testing.assert_allclose(predictor.predict(images[..., 0]), probs, atol=1e-6)
  assert predictor.step == 30 and predictor.label_names == [str(i) for i in range(10)]
  accuracy = float(np.mean(probs.argmax(-1) == labels))
  assert accuracy > 0.3  # a 30-step model: better than chance


def test_predict_rejects_wrong_shapes(predictor):
  with pytest.raises(UserError, match=r"expected \(N, 8, 8, 1\)"):
    predictor.predict(np.zeros((2, 28, 28, 1), np.uint8))
  with pytest.raises(UserError, match="3 channels where the model takes 1"):
    predictor.predict(np.zeros((2, 8, 8, 3), np.uint8))
  with pytest.raises(UserError, match=r"integers in \[0, 255\]"):
    predictor.predict(np.full((1, 8, 8, 1), 300))


def test_files_images_npy_csv_and_errors(predictor, test_digits, tmp_path):
  images = test_digits["image"][:4]
  # PNGs at the dataset's size, and one RGB 32x32 image converted and resized as training-like input.
  for i, image in enumerate(images):
    Image.fromarray(image[..., 0]).save(tmp_path / f"digit{i}.png")
  big = Image.fromarray(images[0][..., 0]).resize((32, 32), Image.NEAREST).convert("RGB")
  big.save(tmp_path / "big_rgb.jpg", quality=95)
  np.save(tmp_path / "one.npy", images[1])          # one example
  np.save(tmp_path / "batch.npy", images[:3])       # a batch
  rows = predictor.predict_files([str(tmp_path / f"digit{i}.png") for i in range(4)], top_k=3)
  expected = predictor.predict(images)
  assert [r["prediction_index"] for r in rows] == expected.argmax(-1).tolist()
  assert all(len(r["top_k"]) == 3 for r in rows)
  np.testing.assert_allclose([r["top_k"][0]["probability"] for r in rows], expected.max(-1), atol=1e-6)

  names, batch = predictor.load_inputs([str(tmp_path / "one.npy"), str(tmp_path / "batch.npy")])
  assert names[0].endswith("one.npy") and names[1].endswith("batch.npy[0]") and len(names) == 4
  np.testing.assert_array_equal(batch, np.concatenate([images[1:2], images[:3]]))

  resized = predictor.load_image(str(tmp_path / "big_rgb.jpg"))
  assert resized.shape == (8, 8, 1) and resized.dtype == np.uint8
  manual = np.asarray(Image.open(tmp_path / "big_rgb.jpg").convert("L").resize((8, 8), Image.BILINEAR))
  np.testing.assert_array_equal(resized[..., 0], manual)

  # A directory expands to its input files, sorted.
  names, _ = predictor.load_inputs([str(tmp_path)])
  assert any(n.endswith("big_rgb.jpg") for n in names) and any(n.endswith("digit3.png") for n in names)

  (tmp_path / "bad.png").write_bytes(b"this is not a png")
  with pytest.raises(UserError, match=r"bad\.png: cannot decode as an image"):
    predictor.load_file(str(tmp_path / "bad.png"))
  np.save(tmp_path / "rgb.npy", np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(UserError, match=r"rgb\.npy: .*3 channels where the model takes 1"):
    predictor.load_file(str(tmp_path / "rgb.npy"))
  np.save(tmp_path / "wrong.npy", np.zeros((5, 7), np.uint8))
  with pytest.raises(UserError, match=r"wrong\.npy: shape \(5, 7\) .*expected \(N, 8, 8, 1\)"):
    predictor.load_file(str(tmp_path / "wrong.npy"))
  with pytest.raises(UserError, match="no such file"):
    predictor.load_file(str(tmp_path / "missing.png"))
  (tmp_path / "features.csv").write_text("1,2,3\n")
  with pytest.raises(UserError, match="1-D feature inputs only"):
    predictor.load_file(str(tmp_path / "features.csv"))


def test_cli_json_and_errors(digits_run, test_digits, tmp_path, capsys):
  workdir = digits_run[1]
  for i in range(3):
    Image.fromarray(test_digits["image"][i][..., 0]).save(tmp_path / f"d{i}.png")
  assert predict.main(["--workdir", workdir, "--json", "--top_k", "2", str(tmp_path)]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["checkpoint_step"] == 30 and len(out["predictions"]) == 3
  assert all(len(p["top_k"]) == 2 for p in out["predictions"])
  assert predict.main(["--workdir", workdir, str(tmp_path / "d0.png")]) == 0
  line = capsys.readouterr().out.strip()
  assert line.startswith(str(tmp_path / "d0.png") + ": ") and line.count("\n") == 0

  empty = tmp_path / "empty_workdir"
  empty.mkdir()
  (empty / "config.json").write_text(open(os.path.join(workdir, "config.json")).read())
  (empty / "run.json").write_text(open(os.path.join(workdir, "run.json")).read())
  with pytest.raises(UserError, match="no checkpoint in") as e:
    predict.main(["--workdir", str(empty), str(tmp_path / "d0.png")])
  assert "\n" not in str(e.value)
  with pytest.raises(UserError, match="config.json does not exist: is this a lepton_jax workdir"):
    predict.main(["--workdir", str(tmp_path), str(tmp_path / "d0.png")])


# ---------------------------------------------------------------- binary: threshold, host transform

def test_binary_threshold_and_host_transform(data_dir, tmp_path):
  config = _config("breast_cancer_mlp.py", [
      ("data.data_dir", data_dir), ("num_train_steps", "20"), ("eval_every_steps", "20"),
      ("checkpoint_every_steps", "20"), ("log_every_steps", "10")])
  workdir = str(tmp_path / "bc")
  train.train_and_evaluate(config, workdir)
  p = predict.load(workdir)
  assert p.binary and p.has_host_transform
  from lepton_jax import registry
  raw = registry.get("dataset", "breast_cancer")(config.data)
  test = raw.read("test")  # standardized when read, with the training split's statistics
  from lepton_jax.data.prepare import sklearn_sets
  raw_features = sklearn_sets.BreastCancer().arrays()["test"]["features"][:20]  # not standardized
  probs = p.predict(raw_features)
  logits, _ = p.model.apply(p.variables["params"], p.variables["model_state"],
                            jnp.asarray(test["features"][:20]), train=False)
  np.testing.assert_allclose(probs[:, 1], jax.nn.sigmoid(logits[:, 0]), atol=1e-5)

  np.savetxt(tmp_path / "x.csv", raw_features[:5], delimiter=",")
  rows = p.predict_files([str(tmp_path / "x.csv")], threshold=0.5)
  assert [r["decision"] for r in rows] == (probs[:5, 1] >= 0.5).tolist()
  assert all(r["positive_label"] == "benign" for r in rows)
  assert all(r["decision"] for r in p.predict_files([str(tmp_path / "x.csv")], threshold=0.0))
  assert not any(r["decision"] for r in p.predict_files([str(tmp_path / "x.csv")], threshold=1.01))


# ---------------------------------------------------------------- LM sampling

V = 11


def counting_logits(tokens):
  """A causal 'model': the next token is always (token + 1) mod V, with high confidence."""
  return 8.0 * jax.nn.one_hot((tokens + 1) % V, V)


class TinyCausal(nn.Module):
  """Embedding + causal running mean + dense: position t sees tokens[:t + 1] only."""

  @nn.compact
  def __call__(self, tokens):
    h = nn.Embed(V, 16)(tokens)
    counts = jnp.arange(1, tokens.shape[1] + 1, dtype=jnp.float32)[None, :, None]
    h = jnp.cumsum(h, axis=1) / counts
    return nn.Dense(V)(nn.tanh(nn.Dense(16)(h)) + h)


def naive_greedy(logits_fn, prompt, n, max_len=None):
  tokens = list(prompt)
  for _ in range(n):
    context = tokens[-max_len:] if max_len else tokens
    logits = logits_fn(jnp.asarray([context], jnp.int32))
    tokens.append(int(jnp.argmax(logits[0, -1])))
  return tokens[len(prompt):]


def test_sample_greedy_counting_and_window():
  assert sampling.sample(counting_logits, [3], 6, temperature=0) == [4, 5, 6, 7, 8, 9]
  # The window slides past max_len; top_k=1 is greedy whatever the temperature.
  assert sampling.sample(counting_logits, [9, 10], 5, temperature=2.0, top_k=1, max_len=4) == [0, 1, 2, 3, 4]
  with pytest.raises(UserError, match="empty prompt"):
    sampling.sample(counting_logits, [], 3)


def test_sample_tiny_causal_model_matches_naive_decoding():
  model = TinyCausal()
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
  fn = jax.jit(lambda t: model.apply(params, t))  # one compilation per length (naive decoding)
  prompt = [1, 2, 3]
  # Padding on the right never changes the logits read at the last real position.
  assert sampling.sample(fn, prompt, 6, temperature=0) == naive_greedy(fn, prompt, 6)
  assert sampling.sample(fn, prompt, 6, temperature=0, max_len=5) == naive_greedy(fn, prompt, 6, 5)
  a = sampling.sample(fn, prompt, 20, temperature=1.0, seed=1)
  assert a == sampling.sample(fn, prompt, 20, temperature=1.0, seed=1)  # reproducible
  assert a != sampling.sample(fn, prompt, 20, temperature=1.0, seed=2)
  assert all(0 <= t < V for t in a)
  # top_k=2: every sampled token is one of the two most likely at its step.
  tokens = list(prompt)
  for t in sampling.sample(fn, prompt, 6, temperature=5.0, top_k=2, seed=3):
    logits = np.asarray(fn(jnp.asarray([tokens], jnp.int32))[0, -1])
    assert t in np.argsort(-logits)[:2]
    tokens.append(t)


def test_language_model_cli(data_dir, tmp_path, capsys):
  """The lm_transformer config, tiny: the predictor detects an LM and samples text."""
  from lepton_jax import registry
  if "transformer_lm" not in registry.names("model"):
    pytest.importorskip("lepton_jax.models.transformer_lm")  # registers it
  text = tmp_path / "corpus.txt"
  text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
  config = _config("lm_transformer.py", [
      ("data.data_dir", data_dir), ("data.files", str(text)), ("data.seq_len", "16"),
      ("data.validation_fraction", "0.2"), ("model.width", "16"), ("model.depth", "1"),
      ("model.num_heads", "2"), ("model.mlp_dim", "32"), ("model.max_len", "16"),
      ("batch_size", "8"), ("num_train_steps", "4"), ("optimizer.warmup_steps", "1"),
      ("log_every_steps", "2"), ("eval_every_steps", "4"), ("checkpoint_every_steps", "4")])
  # An untrained workdir (config.json, run.json, a checkpoint of the initial state) is all
  # predict needs: no train step to compile.
  from lepton_jax import run_record
  from lepton_jax.checkpoint import manager as checkpointing
  workdir = str(tmp_path / "lm")
  _, task = task_testlib.build(config)
  run_record.prepare(workdir)
  run_record.write(workdir, config, task.run_record(), resuming=False)
  checkpointer = checkpointing.Checkpointer(workdir)
  checkpointer.save(0, task.init_state(task.init_rng))
  checkpointer.wait()
  checkpointer.close()
  assert predict.load(workdir).language_model
  capsys.readouterr()
  argv = ["--workdir", workdir, "--json", "--max_new_tokens", "24", "--seed", "5",
          "--temperature", "0.8", "--top_k", "20", "the quick"]
  assert predict.main(argv) == 0
  first = json.loads(capsys.readouterr().out)
  assert predict.main(argv) == 0
  assert json.loads(capsys.readouterr().out) == first  # same seed, same text
  assert first[0]["prompt"] == "the quick"
  assert 0 < len(first[0]["continuation"].encode("utf-8", "replace")) <= 24 * 3


# ---------------------------------------------------------------- acceptance: MNIST PNGs vs eval

def _cli(module, *args, timeout=600):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  start = time.perf_counter()
  r = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                     cwd=REPO, env=env, timeout=timeout)
  print(f"python -m {module} {' '.join(a for a in args if a.startswith('--mode'))}: "
        f"{time.perf_counter() - start:.1f}s")
  return r


@pytest.fixture(scope="session")
def mnist_data_dir():
  """A data dir kept between sessions, so that MNIST is prepared from the IDX files once
  (LEPTON_TEST_MNIST_DATA_DIR overrides the place)."""
  import tempfile
  return os.environ.get("LEPTON_TEST_MNIST_DATA_DIR") or os.path.join(
      tempfile.gettempdir(), "lepton_jax_test_tfds")


@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason="needs the MNIST IDX files")
def test_mnist_png_predictions_agree_with_eval(mnist_data_dir, tmp_path):
  data_dir = mnist_data_dir
  workdir = str(tmp_path / "mnist")
  common = ["--config", "configs/mnist_cnn.py", "--workdir", workdir,
            f"--config.data.manual_dir={MNIST_DIR}", f"--config.data.data_dir={data_dir}"]
  r = _cli("lepton_jax.main", *common, "--config.num_train_steps=300", "--config.log_every_steps=100")
  assert r.returncode == 0, r.stderr[-3000:]

  r = _cli("lepton_jax.main", *common, "--mode=eval", "--config.eval.split=test[:1000]")
  assert r.returncode == 0, r.stderr[-3000:]
  record = json.load(open(os.path.join(workdir, "eval_test_0-1000_step300.json")))
  assert record["num_examples"] == 1000
  eval_correct = int(round(record["metrics"]["accuracy"] * 1000))
  assert eval_correct == int(np.trace(np.asarray(record["confusion"])))

  # The same 1,000 images, in the files' order, as PNG files.
  config = _config("mnist_cnn.py", [("data.manual_dir", MNIST_DIR), ("data.data_dir", data_dir)])
  from lepton_jax import registry
  arrays = registry.get("dataset", "mnist")(config.data).read("test[:1000]")
  png_dir = tmp_path / "pngs"
  png_dir.mkdir()
  labels = {}
  for i, (image, label) in enumerate(zip(arrays["image"], arrays["label"])):
    path = png_dir / f"{i:04d}.png"
    Image.fromarray(image[..., 0]).save(path)
    labels[str(path)] = int(label)

  r = _cli("lepton_jax.predict", "--workdir", workdir, "--json", "--batch_size", "250", str(png_dir))
  assert r.returncode == 0, r.stderr[-3000:]
  rows = json.loads(r.stdout)["predictions"]
  assert len(rows) == 1000
  predict_correct = sum(row["prediction_index"] == labels[row["input"]] for row in rows)
  print(f"MNIST test[:1000] after 300 steps: eval {eval_correct}/1000 correct, "
        f"predict on PNGs {predict_correct}/1000")
  assert predict_correct == eval_correct
  assert eval_correct > 900
