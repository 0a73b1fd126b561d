"""The fused-Threefry dropout: the same hash as jax.random, the right rate, inverted scaling."""

import jax
import jax.extend.random as jex_random
import jax.numpy as jnp
import numpy as np
import pytest

from luke_jax.models import dropout


def test_threefry_is_jax_threefry():
  rng = np.random.RandomState(0)
  for _ in range(3):
    key = jnp.asarray(rng.randint(0, 2**32, 2, dtype=np.uint64).astype(np.uint32))
    counters = jnp.asarray(rng.randint(0, 2**32, 64, dtype=np.uint64).astype(np.uint32))
    want = jex_random.threefry_2x32(key, counters)  # hashes (counters[:32], counters[32:])
    x0, x1 = dropout.threefry2x32(key[0], key[1], counters[:32], counters[32:])
    np.testing.assert_array_equal(np.concatenate([x0, x1]), want)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_keep_rate_and_independence(rate):
  mask = np.asarray(jax.jit(lambda k: dropout.keep_mask(k, (1000, 1000), rate))(
      jax.random.PRNGKey(0)))
  assert mask.shape == (1000, 1000) and mask.dtype == np.bool_
  # 1e6 Bernoulli draws: the standard error of the mean is < 5e-4.
  assert abs(mask.mean() - (1 - rate)) < 3e-3
  # Neighbouring elements are independent: P(both kept) = (1 - rate)^2.
  assert abs((mask[:, :-1] & mask[:, 1:]).mean() - (1 - rate) ** 2) < 3e-3
  other = np.asarray(dropout.keep_mask(jax.random.PRNGKey(1), (1000, 1000), rate))
  assert 0.3 < (mask == other).mean() < 0.9  # another key, another mask


def test_keys_of_every_kind():
  legacy = jax.random.PRNGKey(7)
  typed = jax.random.wrap_key_data(legacy)
  np.testing.assert_array_equal(dropout.keep_mask(legacy, (4, 5), 0.3),
                                dropout.keep_mask(typed, (4, 5), 0.3))
  # Another PRNG implementation falls back to jax.random.bernoulli.
  rbg = jax.random.key(0, impl="rbg")
  assert dropout.keep_mask(rbg, (4, 5), 0.3).shape == (4, 5)


def test_inverted_dropout_values_and_gradient():
  x = jnp.arange(1.0, 401.0).reshape(20, 20)
  key = jax.random.PRNGKey(3)
  y = dropout.dropout(x, 0.25, key)
  keep = np.asarray(dropout.keep_mask(key, x.shape, 0.25))
  np.testing.assert_allclose(y, np.where(keep, x / 0.75, 0.0), rtol=1e-6)
  grad = jax.grad(lambda x: jnp.sum(dropout.dropout(x, 0.25, key)))(x)
  np.testing.assert_allclose(grad, np.where(keep, 1 / 0.75, 0.0), rtol=1e-6)
  np.testing.assert_array_equal(dropout.dropout(x, 0.0, key), x)
  np.testing.assert_array_equal(dropout.dropout(x, 1.0, key), np.zeros_like(x))
  assert dropout.dropout(x.astype(jnp.bfloat16), 0.25, key).dtype == jnp.bfloat16


def test_module_is_identity_when_deterministic():
  x = jnp.ones((3, 8))
  module = dropout.Dropout(0.5)
  assert module.apply({}, x, True) is x
  y = module.apply({}, x, False, rngs={"dropout": jax.random.PRNGKey(0)})
  assert set(np.unique(np.asarray(y))) <= {0.0, 2.0} and 0 < float(y.mean()) < 2
