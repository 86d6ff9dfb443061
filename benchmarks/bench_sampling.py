"""Tokens/s of sampling.generate from a random-init transformer_lm.

    PYTHONPATH=. python benchmarks/bench_sampling.py [--repeats 3] [--no_cache]

Set-up (that of the measurement before the key/value cache): `TransformerLM()` with its
default fields (width 256, depth 4, 4 heads, mlp 1024, max_len 256, learned positions,
tied embeddings), random init, a prompt of 16 tokens, 128 new tokens, temperature 1.
Batch 1 is one prompt; batch 32 is 32 prompts in one call. Each batch size is compiled
and run once first; then each figure is the median of --repeats timed calls. --no_cache
times the path that re-runs the whole window every step instead.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from lepton_jax import sampling
from lepton_jax.models.transformer_lm import TransformerLM

PROMPT_LEN, NEW_TOKENS = 16, 128


def tokens_per_second(model, variables, batch: int, repeats: int, use_cache: bool) -> tuple[float, float]:
  """(tokens/s, seconds) of the median of `repeats` calls, after a warm-up call."""
  prompts = [list(range(b, b + PROMPT_LEN)) for b in range(batch)]
  run = lambda seed: sampling.generate(model, variables, prompts, NEW_TOKENS, temperature=1.0,  # noqa: E731
                                       seed=seed, use_cache=None if use_cache else False)
  run(0)  # compile
  times = []
  for seed in range(repeats):
    start = time.perf_counter()
    run(seed + 1)
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  return batch * NEW_TOKENS / seconds, seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--no_cache", action="store_true", help="re-run the window every step")
  args = parser.parse_args()
  model = TransformerLM()
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, model.max_len), jnp.int32))
  path = "window re-run (no cache)" if args.no_cache else "key/value cache"
  print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}, {path}")
  for batch in (1, 32):
    rate, seconds = tokens_per_second(model, variables, batch, args.repeats, not args.no_cache)
    print(f"batch {batch}: {rate:,.1f} tokens/s (median of {args.repeats}, {seconds:.2f}s for "
          f"{batch}x{NEW_TOKENS} tokens)", flush=True)


if __name__ == "__main__":
  main()
