"""Architecture names -> modules, and the dummy inputs that initialise each of them."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from luke_jax.models import entity_disambiguation, heads, span_qa
from luke_jax.models.config import LukeConfig
from luke_jax.models.luke import LukeModel

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "LukeModel": LukeModel,
    "LukeForMaskedLM": heads.LukeForMaskedLM,
    "LukeForEntityClassification": heads.LukeForEntityClassification,
    "LukeForEntityPairClassification": heads.LukeForEntityPairClassification,
    "LukeForEntitySpanClassification": heads.LukeForEntitySpanClassification,
    "LukeForSequenceClassification": heads.LukeForSequenceClassification,
    "LukeForTokenClassification": heads.LukeForTokenClassification,
    "LukeForQuestionAnswering": heads.LukeForQuestionAnswering,
    "LukeForMultipleChoice": heads.LukeForMultipleChoice,
    "LukeForEntitySpanQA": span_qa.LukeForEntitySpanQA,
    "LukeForEntityDisambiguation": entity_disambiguation.LukeForEntityDisambiguation,
}

# Heads of a `LukeForMaskedLM` checkpoint that an architecture lacks and drops on loading it:
# the entity disambiguation model is the pretraining model without its word (MLM) head.
DROPPED_MLM_HEADS: dict[str, tuple[str, ...]] = {"LukeForEntityDisambiguation": ("lm_head",)}


def check_architecture(architecture: str) -> None:
  if architecture not in ARCHITECTURES:
    raise ValueError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")


def build(architecture: str, config: LukeConfig) -> nn.Module:
  """The module for an HF architecture name, e.g. `LukeForEntityPairClassification`."""
  check_architecture(architecture)
  return ARCHITECTURES[architecture](config)


def dummy_inputs(architecture: str) -> dict[str, jax.Array]:
  """Smallest inputs that touch every parameter of `architecture` (2 words, 2 entities)."""
  inputs = dict(input_ids=jnp.zeros((1, 2), jnp.int32),
                entity_ids=jnp.zeros((1, 2), jnp.int32),
                entity_position_ids=jnp.zeros((1, 2, 1), jnp.int32))
  if architecture == "LukeForEntitySpanClassification":
    inputs.update(entity_start_positions=jnp.zeros((1, 2), jnp.int32),
                  entity_end_positions=jnp.zeros((1, 2), jnp.int32))
  if architecture == "LukeForMultipleChoice":
    inputs = {k: v[:, None] for k, v in inputs.items()}
  return inputs


def init_params(architecture: str, config: LukeConfig, rng: jax.Array, boxed: bool = False):
  """Random parameters (`boxed` keeps the `nn.LogicallyPartitioned` annotations)."""
  # One jitted program: op-by-op initialisation compiles hundreds of tiny kernels (~10x slower).
  init = jax.jit(lambda r: build(architecture, config).init(r, **dummy_inputs(architecture)))
  params = init(rng)["params"]
  return params if boxed else nn.unbox(params)


def abstract_params(architecture: str, config: LukeConfig, boxed: bool = False):
  """Shapes and dtypes of the parameter tree, without allocating it."""
  return jax.eval_shape(lambda rng: init_params(architecture, config, rng, boxed),
                        jax.random.PRNGKey(0))
