import pytest

from lepton_jax import registry
from lepton_jax.errors import UserError


def test_every_kind_has_builtin_entries():
  for kind in registry.KINDS:
    assert registry.names(kind), f"no {kind} registered"


def test_unknown_name_lists_closest_first():
  with pytest.raises(UserError) as e:
    registry.get("model", "mpl")
  message = str(e.value)
  assert message.startswith("unknown model 'mpl'; registered models (closest first): mlp")
  assert "cnn" in message and "\n" not in message


def test_describe_lists_every_name_grouped_by_kind():
  text = registry.describe()
  for kind in registry.KINDS:
    assert f"{registry.plural(kind)}:" in text
    for name in registry.names(kind):
      assert f"  {name} " in text or text.endswith(f"  {name}") or f"  {name}\n" in text


def test_register_rejects_a_clash_but_allows_reimport():
  @registry.register("metric", "_test_metric")
  def first(stats):
    return 0.0

  registry.register("metric", "_test_metric")(first)  # the same object again: fine
  with pytest.raises(ValueError, match="already registered"):
    @registry.register("metric", "_test_metric")
    def second(stats):
      return 1.0


def test_private_names_work_but_stay_out_of_listings_and_hints():
  @registry.register("loss", "_test_private_loss")
  def private_loss(logits, labels):
    return 0.0

  assert registry.get("loss", "_test_private_loss") is private_loss
  assert "_test_private_loss" not in registry.names("loss")
  assert "_test_private_loss" in registry.names("loss", private=True)
  assert "_test_private_loss" not in registry.describe()
  from lepton_jax import docgen
  assert "_test_private_loss" not in docgen.generate()
  with pytest.raises(UserError) as e:
    registry.get("loss", "_test_private_los")
  assert "_test_private_loss" not in str(e.value)
