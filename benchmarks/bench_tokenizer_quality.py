"""Subword tokens against bytes at the same CPU time, in bits per byte of the validation text.

    PYTHONPATH=. python benchmarks/bench_tokenizer_quality.py [--config configs/gpt2_small.py:tiny]
        [--cpu_seconds 600] [--vocab_size 4096] [--workdir /tmp/lepton/tokenizer_quality]

For each tokenizer (bytes; a SentencePiece BPE of --vocab_size trained on the train split of the
same text), the config's model trains from scratch until the process has used --cpu_seconds of CPU
time (all threads; the loop then saves and stops as on SIGTERM), and that checkpoint is evaluated
on the validation split. The validation text is the same bytes for both (the split is cut on bytes
before tokenizing), and bits per byte counts the loss of every target token over the UTF-8 bytes
those tokens decode to, so the two figures compare directly. The learning-rate schedule spans
num_train_steps for both runs, so the budget, not the schedule, ends each run.
"""

import json
import os
import sys
import time

from lepton_jax import config_lib, evaluate
from lepton_jax.cli import CliParser, run_cli, split_overrides
from lepton_jax.train import loop
from lepton_jax.train.preemption import Preempted


def run(config, workdir: str, cpu_seconds: float) -> dict:
  start = time.process_time()
  try:
    result = loop.train(config, workdir, stop_requested=lambda: time.process_time() - start
                        > cpu_seconds)
    step = result.step
  except Preempted as stopped:
    step = int(stopped.args[0])
  used = time.process_time() - start
  metrics = evaluate.evaluate_workdir(config, workdir, split="validation", verbose=False)
  return {"steps": step, "cpu_seconds": round(used, 1),
          "examples": step * config.batch_size,
          "bits_per_byte": metrics["bits_per_byte"], "loss_per_token": metrics["loss"]}


def tokenized(config, kind: str, vocab_size: int, workdir: str):
  config = config.copy_and_resolve_references()
  if kind != "bytes":
    with config.unlocked():
      config.data.tokenizer = kind
      config.data.tokenizer_path = os.path.join(workdir, f"{kind}_{vocab_size}.model")
      config.data.vocab_size = vocab_size
  return config


def main(argv) -> int:
  rest, overrides = split_overrides(argv)
  p = CliParser(prog="benchmarks/bench_tokenizer_quality.py", description=__doc__)
  p.add_argument("--config", default="configs/gpt2_small.py:tiny")
  p.add_argument("--cpu_seconds", type=float, default=600.0)
  p.add_argument("--vocab_size", type=int, default=4096)
  p.add_argument("--workdir", default="/tmp/lepton/tokenizer_quality")
  args = p.parse_args(rest)
  config = config_lib.load(args.config)
  config_lib.apply_overrides(config, overrides)
  with config.unlocked():
    config.num_train_steps = max(config.num_train_steps, 100_000)  # the budget ends the run
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 0
  results = {}
  for kind in ("bytes", "sentencepiece"):
    workdir = os.path.join(args.workdir, kind)
    results[kind] = run(tokenized(config, kind, args.vocab_size, args.workdir), workdir,
                        args.cpu_seconds)
    print(f"{kind}: {json.dumps(results[kind])}", flush=True)
  ratio = results["sentencepiece"]["bits_per_byte"] / results["bytes"]["bits_per_byte"]
  print(f"validation bits per byte at {args.cpu_seconds:.0f} CPU seconds: bytes "
        f"{results['bytes']['bits_per_byte']:.4f}, SentencePiece BPE {args.vocab_size} "
        f"{results['sentencepiece']['bits_per_byte']:.4f} ({ratio:.3f}x)")
  return 0


if __name__ == "__main__":
  run_cli(main, sys.argv[1:])
