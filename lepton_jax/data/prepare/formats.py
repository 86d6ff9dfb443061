"""Which preparer reads a dataset config: the registered dataset name -> its source format."""

from lepton_jax.data.prepare import cifar10, core, image_folder, mnist, sklearn_sets, text_files
from lepton_jax.errors import UserError

PREPARERS = {
    "image_folder": image_folder.ImageFolder,
    "text_files": text_files.TextFiles,
    "mnist": mnist.Mnist,
    "cifar10": cifar10.Cifar10,
    "digits": sklearn_sets.Digits,
    "breast_cancer": sklearn_sets.BreastCancer,
}


def preparer_for(data_config, tokenizer=None) -> core.Preparer:
  """The preparer of `data_config.name` with the config's settings; `tokenizer` (an object with
  encode/decode/vocab_size/fingerprint) is used by text datasets only."""
  name = str(data_config.get("name", ""))
  if name not in PREPARERS:
    raise UserError(f"dataset {name!r} is not prepared from local files; those that are: "
                    f"{', '.join(sorted(PREPARERS))} (tfds catalog datasets prepare themselves)")
  if name == "text_files":
    return text_files.TextFiles.from_config(data_config, tokenizer)
  return PREPARERS[name].from_config(data_config)
