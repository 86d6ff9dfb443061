"""Prepares a dataset once, before training (e.g. into storage that every host of a pod reads).

    python -m lepton_jax.prepare_data --dataset mnist --manual-dir ../shared/data/mnist \
        [--data-dir DIR]
    python -m lepton_jax.prepare_data --config configs/imagefolder_cnn.py:/data/flowers \
        [--data-dir DIR] [--config.data.image_size=224,224] [--workers 8]
    python -m lepton_jax.prepare_data --dataset tfds:cifar100 [--data-dir DIR]

Training prepares on first use too; this runs the preparation alone. Local formats (image
folders, text files, MNIST and CIFAR-10 files, scikit-learn's sets) are written as ArrayRecord
files (lepton_jax/data/records.py) under DIR/<dataset>/<settings>/, with neither TensorFlow
nor tensorflow-datasets; the work is resumable (rerun the same command after an
interruption), never leaves a dataset that looks complete when it is not, and can be shared
out: run the same command on every host with --process-index i --process-count n (a shared
data dir), or with --workers for helper processes on one host. tfds:NAME (or data.name='tfds'
with data.tfds_name) prepares a tfds catalog dataset in tfds' ArrayRecord format (the tfds
extra: pip install 'lepton-jax[tfds]'). DIR defaults to data.data_dir, else $TFDS_DATA_DIR or
~/tensorflow_datasets. tpu_scripts/prepare_data.sh runs this on worker 0.
"""

import ml_collections

from lepton_jax import config_lib
from lepton_jax.cli import CliParser, run_cli, split_overrides
from lepton_jax.errors import UserError

TFDS_PREFIX = "tfds:"


def _parser() -> CliParser:
  p = CliParser(prog="python -m lepton_jax.prepare_data", description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", default="", help="dataset name (see --list of main), or tfds:NAME "
                 "for a tfds catalog dataset")
  p.add_argument("--config", default="", help="a config file whose data settings to prepare, "
                 "as for main (then --dataset is optional); --config.data.KEY=VALUE overrides")
  p.add_argument("--data-dir", "--data_dir", dest="data_dir", default="",
                 help="where prepared datasets live (default: the config's data.data_dir, else "
                      "$TFDS_DATA_DIR or ~/tensorflow_datasets)")
  p.add_argument("--manual-dir", "--manual_dir", dest="manual_dir", default="",
                 help="folder with the original files, for datasets built offline")
  p.add_argument("--process-index", type=int, default=0, help="this process, of --process-count "
                 "processes sharing the work")
  p.add_argument("--process-count", type=int, default=1)
  p.add_argument("--workers", type=int, default=-1,
                 help="helper processes on this host (-1: one per core for big sources)")
  return p


def data_config(args, overrides) -> ml_collections.ConfigDict:
  """config.data of --config (with overrides), or one made of --dataset/--manual-dir."""
  if args.config:
    config = config_lib.load(args.config)
    config_lib.apply_overrides(config, overrides)
    data = config.data
  elif overrides:
    raise UserError(f"--config.{overrides[0][0]} needs --config FILE (the settings it changes)")
  elif not args.dataset:
    raise UserError("give --dataset NAME or --config FILE")
  else:
    data = ml_collections.ConfigDict({"name": args.dataset, "data_dir": "", "manual_dir": ""})
  with data.unlocked():
    if args.dataset:
      data.name = args.dataset
    if args.data_dir:
      data.data_dir = args.data_dir
    if args.manual_dir:
      data.manual_dir = args.manual_dir
    if str(data.name).startswith(TFDS_PREFIX):
      data.tfds_name = data.name[len(TFDS_PREFIX):]
      data.name = "tfds"
  return data


def prepare(data, args) -> tuple[str, dict]:
  """(where the dataset is, its split sizes), preparing it unless it is prepared."""
  from lepton_jax.data import base
  from lepton_jax.data.prepare import core
  if args.process_count < 1 or not 0 <= args.process_index < args.process_count:
    raise UserError(f"--process-index {args.process_index} is not in [0, --process-count "
                    f"{args.process_count})")
  dataset = base.build(data)
  if isinstance(dataset, base.RecordDataset) and getattr(dataset, "catalog", None) is None:
    manifest = core.ensure(dataset.preparer(), base.data_dir(dataset.config), args.process_index,
                           args.process_count, None if args.workers < 0 else args.workers)
    return manifest.directory, manifest.dataset_info().split_sizes
  info = dataset.info()  # tfds prepares a catalog dataset here; other datasets read as they are
  return dataset.cache_dir() or base.data_dir(dataset.config), info.split_sizes


def main(argv: list[str]) -> int:
  rest, overrides = split_overrides(argv)
  args = _parser().parse_args(rest)
  data = data_config(args, overrides)
  directory, sizes = prepare(data, args)
  summary = ", ".join(f"{split} {n:,}" for split, n in sorted(sizes.items()))
  print(f"{data.get('tfds_name') or data.name} is prepared in {directory}: {summary}")
  return 0


if __name__ == "__main__":
  run_cli(main)
