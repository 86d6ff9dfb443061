"""Train (or evaluate) a config in a workdir; re-running the same command resumes.

    python -m lepton_jax.main --config configs/x.py[:arg] --workdir DIR [--config.KEY=VALUE ...]
    python -m lepton_jax.main --config ... --workdir DIR --mode=eval [--checkpoint latest|best|STEP]
    python -m lepton_jax.main --config configs/x.py --workdir DIR --sweep   # the file's get_sweep()
    python -m lepton_jax.main --list

--config.KEY=VALUE overrides one key of the config, dotted for nested keys
(--config.optimizer.learning_rate=0.01, --config.model.conv_features=32,64);
the value must fit the type of the key's default. Every key and its default:
docs/config_reference.md.

Exit status: 0 done; 2 bad input (config, data, checkpoint, CLI); 3 training
diverged; 75 preempted (SIGTERM/SIGINT: a checkpoint was committed, run the same
command again to continue); 1 anything else (a bug: a traceback is printed).
"""

import argparse

from lepton_jax.cli import CliParser, run_cli, split_overrides
from lepton_jax.errors import UserError


def build_parser() -> argparse.ArgumentParser:
  p = CliParser(prog="python -m lepton_jax.main", description=__doc__,
                usage="%(prog)s --config FILE.py[:ARG] --workdir DIR [--config.KEY=VALUE ...] "
                      "[options]")
  p.add_argument("--config", help="config file, optionally with an argument: configs/x.py[:arg]")
  p.add_argument("--workdir", help="directory (or gs:// path) for checkpoints, logs and metrics")
  p.add_argument("--mode", choices=("train", "eval"), default="train",
                 help="train (resuming from the workdir), or evaluate its latest checkpoint")
  p.add_argument("--checkpoint", default="latest",
                 help="with --mode=eval: latest, best (by eval.best_metric) or a step number")
  p.add_argument("--sweep", action="store_true",
                 help="run every point of the config file's get_sweep() in WORKDIR/<index>_<key=value...>")
  p.add_argument("--list", action="store_true", help="print every registered name, by kind")
  p.add_argument("--distributed", action="store_true",
                 help="call jax.distributed.initialize() (automatic on Cloud TPU pods)")
  p.add_argument("--coordinator_address", help="host:port of process 0 (GPU clusters, tests)")
  p.add_argument("--num_processes", type=int, help="number of processes (with --coordinator_address)")
  p.add_argument("--process_id", type=int, help="this process's index (with --coordinator_address)")
  return p


def initialize_distributed(args) -> None:
  import jax
  if args.coordinator_address:
    if args.num_processes is None or args.process_id is None:
      raise UserError("--coordinator_address needs --num_processes and --process_id")
    jax.distributed.initialize(args.coordinator_address, args.num_processes, args.process_id,
                               heartbeat_timeout_seconds=30)
  elif args.distributed:
    jax.distributed.initialize()


def main(argv: list[str]) -> int:
  rest, overrides = split_overrides(argv)
  args = build_parser().parse_args(rest)
  from lepton_jax import registry
  if args.list:
    print(registry.describe())
    return 0
  if not args.config:
    raise UserError("--config is required, e.g. --config configs/quickstart.py")
  if not args.workdir:
    raise UserError("--workdir is required: the directory for checkpoints and logs")
  # Imported here, not at the top: --help and usage errors answer without loading JAX.
  from lepton_jax import config_lib, evaluate, sweep, train
  from lepton_jax.train.preemption import StopFlag
  if args.sweep:
    initialize_distributed(args)
    return sweep.run_sweep(args.config, args.workdir, overrides, mode=args.mode,
                           checkpoint=args.checkpoint, stop_requested=StopFlag().install())
  config = config_lib.load(args.config)
  config_lib.apply_overrides(config, overrides)
  initialize_distributed(args)
  if args.mode == "eval":
    evaluate.evaluate_workdir(config, args.workdir, checkpoint=args.checkpoint)
    return 0
  try:
    train.train_and_evaluate(config, args.workdir, stop_requested=StopFlag().install())
  except train.Preempted:
    return train.PREEMPTED_EXIT_CODE
  return 0


def run(argv: list[str] | None = None) -> None:
  run_cli(main, argv)


if __name__ == "__main__":
  run()
