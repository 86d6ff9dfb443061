"""The language_model experiment and the LM configs, end to end on a small text."""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from lepton_jax import config_lib, registry, train
from lepton_jax.errors import UserError
from lepton_jax.data.info import DatasetInfo

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lm_info(seq_len=5):
  return DatasetInfo(name="text_files", input_key="tokens", input_shape=(seq_len,),
                                 input_dtype=np.int32, num_classes=256, label_key="targets",
                                 split_sizes={"train": 10, "validation": 3})


def experiment(metrics=("loss", "bits_per_byte", "perplexity", "accuracy"), label_smoothing=0.0):
  config = ml_collections.ConfigDict({
      "loss": {"name": "softmax_cross_entropy", "label_smoothing": label_smoothing},
      "metrics": tuple(metrics), "experiment": "language_model"})
  return registry.get("experiment", "language_model")(config, lm_info())


def test_loss_is_next_token_cross_entropy_and_eval_sums_over_real_tokens():
  exp = experiment()
  assert exp.model_kwargs == {"vocab_size": 256} and exp.tokens_per_example == 5
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(3, 5, 256)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, 256, (3, 5)), jnp.int32)
  batch = {"tokens": targets, "targets": targets}
  per_token = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  np.testing.assert_allclose(exp.loss(logits, batch), per_token.mean(1), rtol=1e-6)

  mask = jnp.asarray([True, True, False])
  stats = jax.device_get(exp.eval_statistics(logits, batch, mask))
  assert stats["count"] == 2 and stats["tokens"] == 10
  np.testing.assert_allclose(stats["loss_sum"], per_token[:2].sum(), rtol=1e-5)
  correct = (jnp.argmax(logits, -1) == targets)[:2].sum()
  assert stats["correct"] == correct
  summary = exp.summarize(stats)
  loss = float(per_token[:2].mean())
  assert summary["loss"] == pytest.approx(loss, rel=1e-5)
  assert summary["bits_per_byte"] == pytest.approx(loss / math.log(2), rel=1e-5)
  assert summary["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
  assert summary["accuracy"] == pytest.approx(float(correct) / 10)


def test_label_smoothing_applies_to_training_not_to_the_eval_loss():
  smooth, plain = experiment(label_smoothing=0.2), experiment()
  logits = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 256)), jnp.float32)
  batch = {"targets": jnp.zeros((2, 5), jnp.int32)}
  assert not np.allclose(smooth.loss(logits, batch), plain.loss(logits, batch))
  mask = jnp.ones((2,), bool)
  assert smooth.eval_statistics(logits, batch, mask)["loss_sum"] == plain.eval_statistics(logits, batch, mask)["loss_sum"]


def test_confusion_metrics_and_non_token_data_are_refused():
  with pytest.raises(UserError, match="f1 do not apply"):
    experiment(metrics=("loss", "f1"))
  with pytest.raises(UserError, match="unknown metric"):
    experiment(metrics=("bits_per_bite",))
  image_info = DatasetInfo(name="mnist", input_key="image", input_shape=(28, 28, 1),
                                       input_dtype=np.uint8, num_classes=10, split_sizes={})
  config = ml_collections.ConfigDict({"loss": {"name": "softmax_cross_entropy"}, "metrics": ("loss",)})
  with pytest.raises(UserError, match="integer token sequences"):
    registry.get("experiment", "language_model")(config, image_info)


def test_metrics_are_registered():
  assert {"bits_per_byte", "perplexity"} <= set(registry.names("metric"))
  stats = {"loss_sum": 2.0 * math.log(2), "count": 2.0}
  assert registry.get("metric", "bits_per_byte")(stats) == pytest.approx(1.0)
  assert registry.get("metric", "perplexity")(stats) == pytest.approx(2.0)


@pytest.mark.parametrize("spec,overrides", [
    ("configs/lm_transformer.py", [("model.width", "32"), ("model.depth", "1"), ("model.num_heads", "2"),
                                   ("model.mlp_dim", "64"), ("model.max_len", "16")]),
    ("configs/lm_lstm.py", [("model.hidden_size", "32"), ("model.num_layers", "1"), ("model.embed_dim", "16")]),
])
def test_lm_configs_train_end_to_end(tmp_path, spec, overrides):
  text = tmp_path / "text.txt"
  text.write_text("the quick brown fox jumps over the lazy dog. " * 60)
  config = config_lib.load(os.path.join(REPO, spec))
  config_lib.apply_overrides(config, [
      ("data.files", str(text)), ("data.data_dir", str(tmp_path / "tfds")), ("data.seq_len", "16"),
      ("data.validation_fraction", "0.1"), ("batch_size", "16"), ("num_train_steps", "30"),
      ("log_every_steps", "10"), ("eval_every_steps", "30"), ("checkpoint_every_steps", "30"),
      ("optimizer.warmup_steps", "3"), ("optimizer.learning_rate", "0.01")] + overrides)
  result = train.train_and_evaluate(config, str(tmp_path / "workdir"))
  assert set(result) == {"loss", "bits_per_byte", "accuracy", "step"}
  assert result["bits_per_byte"] == pytest.approx(result["loss"] / math.log(2))
  assert result["bits_per_byte"] < 5.0  # well below the 8 bits of a uniform guess: it learned
