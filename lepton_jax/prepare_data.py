"""Prepares a dataset once, before training (e.g. into storage that every host of a pod reads).

    python -m lepton_jax.prepare_data --dataset mnist --data-dir gs://BUCKET/tfds \
        [--manual-dir ../shared/data/mnist]
    python -m lepton_jax.prepare_data --format records --config configs/imagefolder_cnn.py:/data/flowers \
        --data-dir /data/prepared [--config.data.image_size=224,224] [--workers 8]
    python -m lepton_jax.prepare_data --format records --dataset tfds:cifar100 --data-dir DIR

`--format tfds` (the default) builds a registered dataset into a tfds data dir, as training reads
it today. `--format records` writes ArrayRecord files (lepton_jax/data/records.py) for the
streamed pipeline: local formats need no TensorFlow, the work is resumable (rerun the same
command after an interruption), and big folders can be shared out: run the same command on
every host with --process-index i --process-count n (a shared data dir), or with --workers for
helper processes on one host. tfds:NAME prepares a tfds catalog dataset in tfds' ArrayRecord
format. tpu_scripts/prepare_data.sh runs this on worker 0.
"""

import ml_collections

from lepton_jax import config_lib, registry
from lepton_jax.cli import CliParser, run_cli, split_overrides
from lepton_jax.errors import UserError

TFDS_PREFIX = "tfds:"


def _parser() -> CliParser:
  p = CliParser(prog="python -m lepton_jax.prepare_data", description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", default="", help="dataset name (see --list of main); "
                 "with --format records also tfds:NAME for a tfds catalog dataset")
  p.add_argument("--config", default="", help="a config file whose data settings to prepare, "
                 "as for main (then --dataset is optional); --config.data.KEY=VALUE overrides")
  p.add_argument("--data-dir", "--data_dir", dest="data_dir", required=True,
                 help="where prepared datasets live")
  p.add_argument("--manual-dir", "--manual_dir", dest="manual_dir", default="",
                 help="folder with the original files, for datasets built offline")
  p.add_argument("--format", choices=("tfds", "records"), default="tfds",
                 help="tfds: a tfds data dir (what training reads today); records: ArrayRecord "
                      "files for the streamed pipeline")
  p.add_argument("--process-index", type=int, default=0, help="this process, of --process-count "
                 "processes sharing the work (records)")
  p.add_argument("--process-count", type=int, default=1)
  p.add_argument("--workers", type=int, default=-1,
                 help="helper processes on this host (records; -1: one per core for big sources)")
  return p


def data_config(args, overrides) -> ml_collections.ConfigDict:
  """config.data of --config (with overrides), or one made of --dataset/--manual-dir."""
  if args.config:
    config = config_lib.load(args.config)
    config_lib.apply_overrides(config, overrides)
    data = config.data
    with data.unlocked():
      data.data_dir = args.data_dir
      if args.dataset:
        data.name = args.dataset
      if args.manual_dir:
        data.manual_dir = args.manual_dir
    return data
  if overrides:
    raise UserError(f"--config.{overrides[0][0]} needs --config FILE (the settings it changes)")
  if not args.dataset:
    raise UserError("give --dataset NAME or --config FILE")
  return ml_collections.ConfigDict({"name": args.dataset, "data_dir": args.data_dir,
                                    "manual_dir": args.manual_dir})


def _prepare_records(data, args) -> tuple[str, dict]:
  from lepton_jax.data.prepare import core, formats, tfds_catalog
  if args.process_count < 1 or not 0 <= args.process_index < args.process_count:
    raise UserError(f"--process-index {args.process_index} is not in [0, --process-count "
                    f"{args.process_count})")
  if str(data.name).startswith(TFDS_PREFIX):
    builder = tfds_catalog.prepare(data.name[len(TFDS_PREFIX):], args.data_dir)
    return str(builder.data_dir), {k: v.num_examples for k, v in builder.info.splits.items()}
  preparer = formats.preparer_for(data)
  manifest = core.ensure(preparer, args.data_dir, args.process_index, args.process_count,
                         None if args.workers < 0 else args.workers)
  return manifest.directory, manifest.dataset_info().split_sizes


def _prepare_tfds(data, args) -> tuple[str, dict]:
  dataset = registry.get("dataset", data.name)(data)
  info = dataset.info()  # prepares the tfds dataset if it is not there yet
  return args.data_dir, info.split_sizes


def main(argv: list[str]) -> int:
  rest, overrides = split_overrides(argv)
  args = _parser().parse_args(rest)
  data = data_config(args, overrides)
  prepare = _prepare_records if args.format == "records" else _prepare_tfds
  directory, sizes = prepare(data, args)
  summary = ", ".join(f"{split} {n:,}" for split, n in sorted(sizes.items()))
  print(f"{data.name} is prepared in {directory}: {summary}")
  return 0


if __name__ == "__main__":
  run_cli(main)
