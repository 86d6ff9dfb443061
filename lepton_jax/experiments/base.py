"""The declared interface of an experiment: what turns a model's outputs into a loss and metrics.

The core (lepton_jax.task) builds an experiment as `Experiment(config, info)` from the registry and
uses only what this class declares; predict, export and report read the class attributes below
instead of probing for attributes or checking subclasses.
"""

import abc

from lepton_jax.data.info import DatasetInfo


class Experiment(abc.ABC):
  """Base class of every registered experiment.

  Class attributes (facts the entry points rely on):
    generative      predict samples a continuation (language models) instead of classifying
    binary          one sigmoid logit; probabilities are [P(label 0), P(label 1)]
    has_confusion   eval statistics hold a `confusion` matrix (the report plots it)
  """

  generative: bool = False
  binary: bool = False
  has_confusion: bool = False

  def __init__(self, config, info: DatasetInfo):
    self.info = info

  @property
  def tokens_per_example(self) -> int | None:
    """Tokens in one example, for the loop's tokens/s (None: not a token model)."""
    return None

  @property
  @abc.abstractmethod
  def model_kwargs(self) -> dict:
    """What the experiment tells the model about its output layer, e.g. {'num_classes': 10}."""

  @abc.abstractmethod
  def loss(self, outputs, batch):
    """The per-example loss, shape (batch,); the train step takes its mean."""

  @abc.abstractmethod
  def train_metrics(self, outputs, batch, per_example_loss) -> dict:
    """Scalars logged in training (means over the batch)."""

  @abc.abstractmethod
  def eval_statistics(self, outputs, batch, mask) -> dict:
    """Sums over the real (`mask`) rows of an eval batch; must include `count` (examples)."""

  @abc.abstractmethod
  def summarize(self, stats) -> dict[str, float]:
    """The metrics of a whole split from its summed statistics."""

  @abc.abstractmethod
  def probabilities(self, outputs):
    """What predict and export return for raw outputs."""

  @abc.abstractmethod
  def predictions(self, outputs):
    """The predicted class (or token) of each output row."""
