"""Text files as language-model windows (data/prepare/text_files.py, datasets.TextFiles): the
split on bytes at a newline before tokenizing, SentencePiece trained on the train split only,
the tokenizer recorded (manifest, run.json) and used by predict without the data, a changed
tokenizer refused, bits per byte over target bytes."""

import json
import math
import os
import shutil

import ml_collections
import numpy as np
import pytest

from lepton_jax import config_lib, predict, train
from lepton_jax.data import base, tokenizers
from lepton_jax.data.prepare import text_files
from lepton_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "theta", "lambda"]


def data_config(data_dir, **kwargs):
  values = dict(name="text_files", data_dir=str(data_dir), manual_dir="", files="", seq_len=8,
                stride=0, validation_fraction=0.25)
  values.update(kwargs)
  return ml_collections.ConfigDict(values)


def corpus(folder):
  """Two files; only the validation part (the end of b.txt) says 'zyzzyva'."""
  rng = np.random.default_rng(0)
  os.makedirs(folder, exist_ok=True)
  lines = [" ".join(rng.choice(TRAIN_WORDS, 6)) + "\n" for _ in range(300)]
  a, b = "".join(lines[:150]), "".join(lines[150:]) + "zyzzyva héllo\n" * 60
  open(os.path.join(folder, "a.txt"), "w", encoding="utf-8").write(a)
  open(os.path.join(folder, "b.txt"), "w", encoding="utf-8").write(b)
  return (a + b).encode()


def test_split_is_on_bytes_at_a_newline_and_windows_shift_by_one(tmp_path):
  data = corpus(tmp_path / "corpus")
  dataset = base.build(data_config(tmp_path / "data", files=str(tmp_path / "corpus" / "*.txt")))
  info = dataset.info()
  assert (info.input_key, info.input_shape, info.num_classes, info.label_key) == (
      "tokens", (8,), 256, "targets")
  assert info.tokenizer == {"kind": "bytes", "vocab_size": 256}
  cut = data.rfind(b"\n", 0, int(round(len(data) * 0.75))) + 1
  for split, part in (("train", data[:cut]), ("validation", data[cut:])):
    arrays = dataset.read(split)
    assert set(arrays) == {"tokens", "targets", "target_bytes"}
    np.testing.assert_array_equal(arrays["tokens"][:, 1:], arrays["targets"][:, :-1])
    assert (arrays["target_bytes"] == 8).all()
    windows = np.concatenate([arrays["tokens"], arrays["targets"][:, -1:]], 1).astype(np.uint8)
    part = np.frombuffer(part, np.uint8)
    np.testing.assert_array_equal(windows, [part[i:i + 9] for i in range(0, len(part) - 8, 8)])
  assert text_files.cut_at_newline(b"abc\ndef\nghi", 0.5) == 4
  assert text_files.cut_at_newline("ééé".encode(), 0.5) == 2  # between characters


def test_sentencepiece_is_trained_on_the_train_split_and_recorded(tmp_path):
  data = corpus(tmp_path / "corpus")
  model = tmp_path / "tok" / "spm.model"
  config = data_config(tmp_path / "data", files=str(tmp_path / "corpus" / "*.txt"), seq_len=16,
                       tokenizer="sentencepiece", tokenizer_path=str(model), vocab_size=300)
  dataset = base.build(config)
  info = dataset.info()
  tok = tokenizers.load("sentencepiece", str(model))
  assert info.tokenizer == tok.spec and info.num_classes == 300
  pieces = {tok.decode([i]) for i in range(tok.vocab_size)}
  assert "alpha" in pieces or " alpha" in pieces
  assert not any("zyzz" in p for p in pieces)  # the validation text was never seen
  manifest = json.loads(open(os.path.join(dataset.cache_dir(), "manifest.json")).read())
  assert manifest["info"]["tokenizer"] == tok.spec
  validation = dataset.read("validation")
  ids = np.concatenate([validation["tokens"][0][:1], validation["targets"].ravel()])
  assert "zyzzyva héllo" in tok.decode(ids)  # consecutive windows: consecutive text
  # The windows are the validation bytes (the same for every tokenizer), in order, and their
  # target bytes count exactly the bytes they cover.
  cut = data.rfind(b"\n", 0, int(round(len(data) * 0.75))) + 1
  covered = data[cut:][:int(tok.byte_lengths[ids[0]]) + int(validation["target_bytes"].sum())]
  assert len(covered) > 1000 and tok.decode(ids) == covered.decode("utf-8", errors="replace")


def lm_config(tmp_path, model, **changes):
  config = config_lib.load(os.path.join(REPO, "configs", "lm_transformer.py"))
  overrides = dict({
      "data.files": str(tmp_path / "corpus" / "*.txt"), "data.data_dir": str(tmp_path / "data"),
      "data.seq_len": "16", "data.validation_fraction": "0.25", "data.tokenizer": "sentencepiece",
      "data.tokenizer_path": str(model), "data.vocab_size": "300", "model.width": "16",
      "model.depth": "1", "model.num_heads": "2", "model.mlp_dim": "32", "model.max_len": "16",
      "num_train_steps": "4", "log_every_steps": "2", "eval_every_steps": "4",
      "checkpoint_every_steps": "4", "optimizer.warmup_steps": "1", "batch_size": "8"},
      **changes)
  config_lib.apply_overrides(config, list(overrides.items()))
  return config


def test_a_subword_run_records_its_tokenizer_and_predict_needs_no_data(tmp_path):
  corpus(tmp_path / "corpus")
  model = tmp_path / "tok" / "spm.model"
  workdir = str(tmp_path / "run")
  result = train.train_and_evaluate(lm_config(tmp_path, model), workdir)
  record = json.load(open(os.path.join(workdir, "run.json")))
  tok = tokenizers.load("sentencepiece", str(model))
  assert record["dataset"]["tokenizer"] == tok.spec
  # bits per byte: the summed loss in bits over the bytes the targets stand for.
  validation = base.build(lm_config(tmp_path, model).data).read("validation")
  tokens = validation["targets"].size
  assert result["bits_per_byte"] == pytest.approx(
      result["loss"] * tokens / math.log(2) / validation["target_bytes"].sum(), rel=1e-4)
  shutil.rmtree(tmp_path / "data")  # predict rebuilds the tokenizer from run.json alone
  shutil.rmtree(tmp_path / "corpus")
  text = predict.load(workdir).generate(["alpha beta"], max_new_tokens=5, temperature=0.0)[0]
  assert isinstance(text, str) and text == tok.decode(tok.encode(text))
  # A tokenizer file changed since (same size, other pieces) is refused on resume.
  corpus(tmp_path / "corpus")
  text = open(tmp_path / "corpus" / "a.txt", encoding="utf-8").read()
  tokenizers.train_sentencepiece(str(model), 300, texts=[text[::-1]])  # other merges
  with pytest.raises(UserError, match="was made with tokenizer"):
    train.train_and_evaluate(lm_config(tmp_path, model, num_train_steps="8"), workdir)


def test_stdlib_placeholder_expands_to_pythons_own_source():
  import sysconfig
  paths = text_files.find_files(ml_collections.ConfigDict({"files": "{stdlib}/os.py",
                                                          "manual_dir": ""}))
  assert paths == [os.path.join(sysconfig.get_paths()["stdlib"], "os.py")]


def test_bad_input_is_a_one_line_user_error(tmp_path):
  short = tmp_path / "short.txt"
  short.write_bytes(b"tiny\n")
  cases = [
      (dict(files=str(tmp_path / "nothing*.txt")), "matches no files"),
      (dict(), "needs data.files"),
      (dict(files=str(short)), "fewer than data.seq_len"),
      (dict(files=str(short), seq_len=0), "seq_len must be a positive integer"),
      (dict(files=str(short), validation_fraction=1.0), "validation_fraction"),
      (dict(manual_dir=str(tmp_path / "missing")), "not a directory"),
      (dict(files=str(short), tokenizer="sentencepiece"), "needs data.tokenizer_path"),
  ]
  for kwargs, message in cases:
    with pytest.raises(UserError, match=message) as e:
      base.build(data_config(tmp_path / "data", **kwargs)).info()
    assert "\n" not in str(e.value)
