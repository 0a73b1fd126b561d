"""Matmul precision that follows the model's dtype.

On TPU a float32 matmul at `Precision.HIGHEST` runs as six bf16 MXU passes (a 3-way split of
each operand); at DEFAULT it runs one. Parity with PyTorch needs HIGHEST in float32; a bf16
model gains nothing from it. So: HIGHEST when the compute dtype is float32, DEFAULT otherwise.

`einsum_f32` is a matmul whose result is float32 (attention scores, vocabulary logits, where
the softmax wants the accumulator's precision) from lower-precision operands. Plain autodiff
would transpose it into float32 x bf16 matmuls (the float32 cotangent against a bf16 operand,
promoted to float32); here the backward casts the cotangent to the operands' dtype first, so
every matmul of a bf16 step stays bf16 x bf16 with float32 accumulation. With float32
operands it is a plain einsum (the parity path is untouched).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Precision = jax.lax.Precision


def precision(dtype) -> Precision:
  """HIGHEST for float32 compute (parity), DEFAULT for bf16 / fp16."""
  return Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else Precision.DEFAULT


def einsum_f32(spec: str, a: jax.Array, b: jax.Array, precision_: Precision | None = None
               ) -> jax.Array:
  """`jnp.einsum(spec, a, b)` accumulated and returned in float32; see the module docstring."""
  dtype = jnp.result_type(a, b)
  if precision_ is None:
    # HIGHEST on bf16 operands is still one MXU pass (there is nothing to split), and with
    # DEFAULT here libtpu 0.0.42.1's compiler overflowed its stack on the bf16 pretraining
    # step (in convolution windowing); the float32 cost of HIGHEST is avoided by the backward
    # below keeping its operands in bf16.
    precision_ = Precision.HIGHEST
  if dtype == jnp.float32:
    return jnp.einsum(spec, a, b, precision=precision_, preferred_element_type=jnp.float32)
  return _low_precision_einsum(spec, precision_, a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _low_precision_einsum(spec, precision_, a, b):
  return jnp.einsum(spec, a, b, precision=precision_, preferred_element_type=jnp.float32)


def _forward(spec, precision_, a, b):
  return _low_precision_einsum(spec, precision_, a, b), (a, b)


def _backward(spec, precision_, residuals, cotangent):
  a, b = residuals
  dtype = jnp.result_type(a, b)
  _, vjp = jax.vjp(lambda x, y: jnp.einsum(spec, x, y, precision=precision_,
                                           preferred_element_type=dtype), a, b)
  return vjp(cotangent.astype(dtype))


_low_precision_einsum.defvjp(_forward, _backward)
