"""The train and eval steps: pure functions of (state, batch), jitted with shardings."""

import jax
import jax.numpy as jnp
import optax

from lepton_jax.train_state import TrainState


def _micro_batches(batch, k: int):
  """(B, ...) -> (k, B/k, ...) so that micro-batch i takes rows i, i+k, ...

  Interleaving keeps every micro-batch spread evenly over the devices that hold
  the batch, so the split needs no communication.
  """
  return jax.tree.map(lambda x: x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1), batch)


def make_train_step(model, experiment, tx, schedule, preprocess, augment, input_key: str,
                    accumulation_steps: int = 1, ema_decay: float = 0.0):
  """train_step(state, batch) -> (state, metrics); `model` is a modeling.LinenModel."""

  def loss_fn(params, model_state, batch, x, dropout_rng):
    outputs, new_model_state = model.apply(params, model_state, x, train=True, rng=dropout_rng)
    per_example = experiment.loss(outputs, batch)
    return per_example.mean(), (outputs, per_example, new_model_state)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    augment_rng, dropout_rng = jax.random.split(rng)
    x = augment(preprocess(batch[input_key], augment_rng), augment_rng)

    if accumulation_steps == 1:
      (loss, (outputs, per_example, model_state)), grads = grad_fn(
          state.params, state.model_state, batch, x, dropout_rng)
      metrics = experiment.train_metrics(outputs, batch, per_example)
    else:
      micro = _micro_batches(dict(batch, __x__=x), accumulation_steps)

      def accumulate(carry, inputs):
        grads_sum, model_state, i = carry
        mb = {k: v for k, v in inputs.items() if k != "__x__"}
        (_, (outputs, per_example, model_state)), grads = grad_fn(
            state.params, model_state, mb, inputs["__x__"], jax.random.fold_in(dropout_rng, i))
        grads_sum = jax.tree.map(jnp.add, grads_sum, grads)
        return (grads_sum, model_state, i + 1), experiment.train_metrics(outputs, mb, per_example)

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (grads, model_state, _), metrics = jax.lax.scan(
          accumulate, (zeros, state.model_state, 0), micro)
      grads = jax.tree.map(lambda g: g / accumulation_steps, grads)
      metrics = jax.tree.map(jnp.mean, metrics)

    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    metrics = dict(metrics, grad_norm=optax.tree.norm(grads), learning_rate=schedule(state.step))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=model_state, ema_params=ema)
    return new_state, metrics

  return train_step


def make_eval_step(model, experiment, preprocess, input_key: str):
  """eval_step(state, batch) -> statistics summed over the batch's real rows."""

  def eval_step(state: TrainState, batch):
    x = preprocess(batch[input_key], jax.random.PRNGKey(0))
    outputs, _ = model.apply(state.eval_params(), state.model_state, x, train=False)
    return experiment.eval_statistics(outputs, batch, batch["mask"])

  return eval_step
