"""Builds a registered dataset into a tfds data dir once (e.g. a gs:// dir for a TPU pod).

    python -m lepton_jax.prepare_data --dataset mnist --data-dir gs://BUCKET/tfds \
        [--manual-dir ../shared/data/mnist]

Run it on one host; every worker then reads the prepared dataset with
--config.data.data_dir pointing at the same dir. tpu_scripts/prepare_data.sh
runs it on worker 0.
"""


import ml_collections

from lepton_jax import registry
from lepton_jax.cli import CliParser, run_cli


def main(argv: list[str]) -> int:
  p = CliParser(prog="python -m lepton_jax.prepare_data", description=__doc__.split("\n\n")[0])
  p.add_argument("--dataset", required=True, help="registered dataset name (see --list of main)")
  p.add_argument("--data-dir", "--data_dir", dest="data_dir", required=True, help="tfds data dir")
  p.add_argument("--manual-dir", "--manual_dir", dest="manual_dir", default="",
                 help="folder with the original files, for datasets built offline")
  args = p.parse_args(argv)
  data_config = ml_collections.ConfigDict({"name": args.dataset, "data_dir": args.data_dir,
                                           "manual_dir": args.manual_dir})
  dataset = registry.get("dataset", args.dataset)(data_config)
  info = dataset.info()  # prepares the tfds dataset if it is not there yet
  sizes = ", ".join(f"{split} {n:,}" for split, n in sorted(info.split_sizes.items()))
  print(f"{info.name} is prepared in {args.data_dir}: {sizes}")
  return 0


if __name__ == "__main__":
  run_cli(main)
