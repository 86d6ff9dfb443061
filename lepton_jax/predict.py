"""Predictions of a trained workdir, for new inputs:

    python -m lepton_jax.predict --workdir W INPUT... [--top_k 3] [--threshold 0.5] [--json]
        [--batch_size N] [--checkpoint latest|best|STEP] [--strict]
    python -m lepton_jax.predict --workdir W_LM "Once upon a time" [--max_new_tokens 200]
        [--temperature 0.8] [--top_k 40] [--seed 0]

    from lepton_jax import predict
    predictor = predict.load("W")                 # the run's config.json, run.json, checkpoint
    probs = predictor.predict(images_uint8)       # (N, 28, 28, 1) raw inputs -> (N, classes)
    rows = predictor.predict_files(["a.png", "b.npy"])

A predictor does to new inputs exactly what training did to the dataset's
examples: the dataset's `host_transform` (numpy, on the host), then the
`config.data.preprocess` ops and the model (jitted), then the experiment's
`probabilities`. Inputs:

  image files (PNG, JPEG, ... via PIL)  converted to the dataset's channels
      (L / RGB / RGBA) and resized (bilinear) to its input height and width,
      with a note on stderr per kind of conversion ("note: resized and converted
      3 images from 640x480 RGB to 8x8 L (the model's input)"); --strict refuses
      such images instead;
  .npy arrays                           one example (input shape) or a batch (N, *input shape);
  .csv / .txt of numbers                rows of features, for 1-D feature inputs;
  directories                           every such file inside, sorted;
  text (language models)                a prompt, or a .txt file holding one: the
      model samples a continuation autoregressively (`sampling.sample`).

Binary experiments report P(positive label) and a decision at --threshold.
"""

import argparse
import json
import os
import sys
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from lepton_jax import predict_inputs, sampling, task as task_lib
from lepton_jax.checkpoint import select
from lepton_jax.checkpoint.manager import Checkpointer
from lepton_jax.cli import CliParser, run_cli
from lepton_jax.data import base as data_base
from lepton_jax.errors import UserError


# ---------------------------------------------------------------- the predictor

class Predictor(predict_inputs.InputFiles):
  """A trained model with its preprocessing, ready for new raw inputs (read from files
  by the methods of `predict_inputs.InputFiles`)."""

  def __init__(self, workdir, task, dataset, variables: dict, step: int, batch_size: int):
    self.workdir = str(workdir)
    self.task = task
    self.config, self.info, self.experiment = task.config, task.info, task.experiment
    self.model, self.preprocess = task.model, task.preprocess
    self.dataset = dataset
    self.variables = variables  # {"params": ..., "model_state": ...} of the restored checkpoint
    self.step = step
    self.batch_size = int(batch_size)
    self._apply = jax.jit(self.apply_fn())  # variables as an argument, not compiled-in constants

  # -- facts
  @property
  def binary(self) -> bool:
    return self.experiment.binary

  @property
  def language_model(self) -> bool:
    return self.experiment.generative

  @property
  def input_shape(self) -> tuple:
    if self.info.input_shape is None:
      raise UserError(f"the input shape of {self.workdir}'s model is unknown (run.json has none)")
    return tuple(int(d) for d in self.info.input_shape)

  @property
  def input_dtype(self) -> np.dtype:
    return np.dtype(self.info.input_dtype)

  @property
  def label_names(self) -> list[str]:
    names = list(self.info.label_names)
    return names if names else [str(i) for i in range(self.info.num_classes)]

  @property
  def has_host_transform(self) -> bool:
    return type(self.dataset).host_transform is not data_base.Dataset.host_transform

  # -- the computation
  def host_transform(self, x: np.ndarray) -> np.ndarray:
    """The dataset's host-side transform of raw inputs (identity for most datasets)."""
    if not self.has_host_transform:
      return x
    return np.asarray(self.dataset.host_transform({self.info.input_key: x})[self.info.input_key])

  def apply_fn(self, host_transform: Callable | None = None, model=None) -> Callable:
    """A jax-traceable fn(variables, x) -> probabilities: [host_transform] -> preprocess
    -> model (default: the run's) -> the experiment's probabilities."""
    model, experiment, preprocess = model or self.model, self.experiment, self.preprocess

    def fn(variables, x):
      if host_transform is not None:
        x = host_transform(x)
      x = preprocess(x, jax.random.PRNGKey(0))
      outputs, _ = model.apply(variables["params"], variables["model_state"], x, train=False)
      return experiment.probabilities(outputs).astype(jnp.float32)

    return fn

  def probabilities_fn(self, host_transform: Callable | None = None, model=None) -> Callable:
    """fn(x) -> probabilities, the variables closed over (constants when traced or exported)."""
    apply, variables = self.apply_fn(host_transform, model), self.variables
    return lambda x: apply(variables, x)

  def predict(self, batch, batch_size: int | None = None) -> np.ndarray:
    """Probabilities (N, num_classes) of a batch of raw inputs shaped like the dataset's examples."""
    x = self.check_batch(batch)
    x = self.host_transform(x)
    n = len(x)
    if n == 0:
      return np.zeros((0, self.info.num_classes), np.float32)
    chunk = min(batch_size or self.batch_size, n)
    out = []
    for lo in range(0, n, chunk):
      part = x[lo:lo + chunk]
      real = len(part)
      if real < chunk:  # pad the last chunk: one compiled shape for the whole call
        part = np.concatenate([part, np.zeros((chunk - real,) + part.shape[1:], part.dtype)])
      out.append(np.asarray(self._apply(self.variables, part))[:real])
    return np.concatenate(out)

  # -- files (read by the InputFiles methods)
  def describe(self, names: Sequence[str], probs: np.ndarray, top_k: int = 3,
               threshold: float = 0.5) -> list[dict]:
    """One dict per example: the prediction, the top-k labels and probabilities
    (binary: P(positive label) and the decision at `threshold`)."""
    labels = self.label_names
    k = max(1, min(int(top_k), probs.shape[-1]))
    rows = []
    for name, p in zip(names, probs):
      order = np.argsort(-p, kind="stable")[:k]
      row = {"input": name,
             "top_k": [{"label": labels[i], "index": int(i), "probability": float(p[i])} for i in order]}
      if self.binary:
        positive = float(p[1])
        index = int(positive >= threshold)
        row.update(probability=positive, positive_label=labels[1], threshold=float(threshold),
                   decision=bool(index))
      else:
        index = int(order[0])
        row["probability"] = float(p[index])
      row["prediction"] = labels[index]
      row["prediction_index"] = index
      rows.append(row)
    return rows

  def predict_files(self, paths: Sequence[str], top_k: int = 3, threshold: float = 0.5,
                    batch_size: int | None = None,
                    conversions: predict_inputs.Conversions | None = None) -> list[dict]:
    """describe() of the examples in `paths`; images resized or converted to fit the model are
    recorded in `conversions` (which refuses them if strict)."""
    names, x = self.load_inputs(paths, conversions)
    return self.describe(names, self.predict(x, batch_size), top_k, threshold)

  # -- language models
  @property
  def codec(self):
    for owner in (self.dataset, getattr(self.dataset, "tokenizer", None)):
      if owner is not None and callable(getattr(owner, "encode", None)) and callable(
          getattr(owner, "decode", None)):
        return owner
    if self.info.num_classes >= 256 or int(getattr(self.model.module, "vocab_size", 0)) >= 256:
      return sampling.ByteCodec()
    raise UserError(f"dataset {self.info.name!r} defines no encode/decode for text and its vocabulary "
                    f"({self.info.num_classes}) is smaller than bytes")

  def logits_fn(self) -> Callable:
    """fn(tokens (B, T) int32) -> (B, T, V) logits of the model (jax-traceable; one per predictor,
    so that sampling reuses its compilations)."""
    if getattr(self, "_logits_fn", None) is None:
      variables, model, preprocess = self.variables, self.model, self.preprocess

      def fn(tokens):
        x = preprocess(tokens, jax.random.PRNGKey(0))
        return model.apply(variables["params"], variables["model_state"], x, train=False)[0]

      self._logits_fn = fn
    return self._logits_fn

  def generate(self, prompts: Sequence[str], max_new_tokens: int = 100, temperature: float = 1.0,
               top_k: int = 0, seed: int = 0) -> list[str]:
    """A sampled continuation of each prompt (text), `max_new_tokens` tokens long, all prompts
    in one batch. Models with a decode mode sample with a KV cache."""
    codec = self.codec
    tokens = [codec.encode(p) for p in prompts]
    # The window never exceeds the length the model was trained on (learned positions
    # cannot go further; rotary ones were not trained to).
    max_len = getattr(self.model.module, "max_len", None) or (self.info.input_shape or (None,))[0]
    if self.task.op_specs.preprocess:  # the model sees preprocessed tokens: re-run the window
      new = [sampling.sample(self.logits_fn(), t, max_new_tokens, temperature=temperature,
                             top_k=top_k, seed=seed, max_len=max_len) for t in tokens]
    else:
      variables = {"params": self.variables["params"], **self.variables["model_state"]}
      new = sampling.generate(self.model.module, variables, tokens, max_new_tokens, temperature,
                              top_k, seed, max_len=max_len)
    return [codec.decode(n) for n in new]


def load(workdir, checkpoint="latest", batch_size: int | None = None) -> Predictor:
  """The Predictor of checkpoint `checkpoint` (latest, best or a step) of `workdir`."""
  task = task_lib.from_workdir(workdir)
  config = task.config
  step = select.resolve_checkpoint(workdir, checkpoint, config)
  checkpointer = Checkpointer(str(workdir))
  try:
    state = checkpointer.restore(task.abstract_state, step)
  finally:
    checkpointer.close()
  variables = {"params": state.eval_params(), "model_state": state.model_state}
  dataset = data_base.build(config.data, recorded=task.info)  # run.json's record, not the data
  batch_size = batch_size or task.eval_batch_size
  return Predictor(workdir, task, dataset, variables, step, batch_size)


# ---------------------------------------------------------------- the command line

def build_parser() -> argparse.ArgumentParser:
  p = CliParser(prog="python -m lepton_jax.predict", description=__doc__)
  p.add_argument("inputs", nargs="*", metavar="INPUT",
                 help="image / .npy / .csv files or directories; for language models, prompt text")
  p.add_argument("--workdir", required=True, help="the trained run's workdir")
  p.add_argument("--checkpoint", default="latest", help="latest, best or a step number")
  p.add_argument("--top_k", type=int, default=None,
                 help="labels to show (default 3); language models: sample among the k most likely "
                      "tokens (default 0: all)")
  p.add_argument("--threshold", type=float, default=0.5,
                 help="binary experiments: predict the positive label when P(positive) >= threshold")
  p.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
  p.add_argument("--batch_size", type=int, default=None, help="examples per model call")
  p.add_argument("--max_new_tokens", type=int, default=100, help="language models: tokens to sample")
  p.add_argument("--temperature", type=float, default=1.0,
                 help="language models: softmax temperature; 0 = greedy")
  p.add_argument("--seed", type=int, default=0, help="language models: sampling seed")
  p.add_argument("--strict", action="store_true",
                 help="refuse images that would be resized or converted to fit the model (else "
                      "they are, with a note saying so)")
  return p


def format_rows(rows: list[dict], binary: bool) -> str:
  lines = []
  for row in rows:
    top = ", ".join(f"{t['label']} {t['probability']:.4f}" for t in row["top_k"])
    if binary:
      lines.append(f"{row['input']}: {row['prediction']} (P({row['positive_label']}) = "
                   f"{row['probability']:.4f}, threshold {row['threshold']:g})")
    else:
      lines.append(f"{row['input']}: {row['prediction']} ({top})")
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  args = build_parser().parse_args(argv)
  if not args.inputs:
    raise UserError("give at least one INPUT (files, directories, or a prompt for language models)")
  if args.batch_size is not None and args.batch_size < 1:
    raise UserError(f"--batch_size={args.batch_size} must be >= 1")
  predictor = load(args.workdir, args.checkpoint, args.batch_size)
  if predictor.language_model:
    prompts = [epath.Path(t).read_text() if t.endswith(".txt") and os.path.isfile(t) else t
               for t in args.inputs]
    continuations = predictor.generate(prompts, args.max_new_tokens, args.temperature,
                                       args.top_k or 0, args.seed)
    out = [{"prompt": p, "continuation": c} for p, c in zip(prompts, continuations)]
    if args.json:
      print(json.dumps(out, indent=2))
    else:
      for row in out:
        print(row["prompt"] + row["continuation"])
    return 0
  conversions = predict_inputs.Conversions(strict=args.strict)
  rows = predictor.predict_files(args.inputs, 3 if args.top_k is None else args.top_k,
                                 args.threshold, args.batch_size, conversions)
  for note in conversions.notes():
    print(note, file=sys.stderr)
  if args.json:
    print(json.dumps({"workdir": str(args.workdir), "checkpoint_step": predictor.step,
                      "predictions": rows}, indent=2))
  else:
    print(format_rows(rows, predictor.binary))
  return 0


def run(argv: list[str] | None = None) -> None:
  run_cli(main, argv)


if __name__ == "__main__":
  run()
