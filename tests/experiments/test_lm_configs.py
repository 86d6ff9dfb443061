"""configs/gpt2_small.py:tiny and configs/llama.py:tiny: each trains, saves, resumes bit for bit,
and its workdir samples with the key/value cache exactly the tokens of the re-run-the-window path."""

import os

import jax
import pytest

import checkpoint_testlib as lib
from lepton_jax import config_lib, predict, sampling, train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPTS = ["def main(", "import os\n"]


def tiny(spec: str, tmp_path):
  text = tmp_path / "corpus.py"
  # Varied lines, so that the model has something to learn in a few steps.
  text.write_text("".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(400)))
  config = config_lib.load(os.path.join(REPO, spec))
  config_lib.apply_overrides(config, [
      ("data.files", str(text)), ("data.data_dir", str(tmp_path / "data")),
      ("num_train_steps", "12"), ("log_every_steps", "3"), ("eval_every_steps", "12"),
      ("checkpoint_every_steps", "6"), ("optimizer.warmup_steps", "2")])
  return config


@pytest.mark.parametrize("spec", ["configs/gpt2_small.py:tiny", "configs/llama.py:tiny"])
def test_tiny_lm_config_resumes_bit_for_bit_and_samples_with_the_cache(spec, tmp_path, monkeypatch):
  config, devices = tiny(spec, tmp_path), jax.devices()[:1]
  reference, resumed = str(tmp_path / "reference"), str(tmp_path / "resumed")
  ref_metrics = train.train_and_evaluate(config, reference, devices=devices)
  with pytest.raises(train.Preempted):  # stops between two saves: the resume replays steps
    train.train_and_evaluate(config, resumed, devices=devices, stop_requested=lib.StopAt(8))
  assert lib.checkpoint_steps(resumed)[-1] == 8
  assert train.train_and_evaluate(config, resumed, devices=devices) == ref_metrics

  step, state = lib.read_state(resumed)
  ref_step, ref_state = lib.read_state(reference)
  assert step == ref_step == 12
  lib.assert_states_equal(state, ref_state)
  lib.assert_same_metrics(resumed, reference)

  predictor = predict.load(resumed)
  cached, windowed, windowed_calls = [], [], []
  real_generate, real_windowed = sampling.generate, sampling._generate_windowed

  def generate(*args, **kwargs):  # the predictor's call, and the same call without the cache
    cached.append(real_generate(*args, **kwargs))
    windowed.append(real_generate(*args, **dict(kwargs, use_cache=False)))
    return cached[-1]

  def counted_windowed(*args, **kwargs):
    windowed_calls.append(1)
    return real_windowed(*args, **kwargs)

  monkeypatch.setattr(sampling, "generate", generate)
  monkeypatch.setattr(sampling, "_generate_windowed", counted_windowed)
  texts = predictor.generate(PROMPTS, max_new_tokens=12, temperature=0.0)
  assert len(windowed_calls) == 1  # only the call without the cache re-ran the window
  assert [len(tokens) for tokens in cached[0]] == [12, 12]
  assert cached == windowed
  assert texts == [predictor.codec.decode(tokens) for tokens in cached[0]]
