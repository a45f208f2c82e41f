"""The matmul of jgrok's dense layers, with its gradient written out.

`matmul(x, w)` is `x @ w` for x (M, K) and a kernel w (K, N). Its backward pass computes the
input's gradient g @ w^T and the kernel's x^T @ g as dots that contract the rows of x and g
directly, giving the kernel's gradient in the kernel's own (K, N) layout. JAX's generic rule
for `dot_general` reaches the same numbers by another route (a dot producing (N, K), then a
transpose), and XLA:CPU then reads every weight gradient transposed in the optimizer's update
or copies activations into transposed layout for YNNPACK. Measured against Flax's own
layers, interleaved in one process (R = 32, idle 2-core AMD EPYC): the 2-layer transformer
1.059x and 1.046x (transposes in its compiled step: 49 -> 0), the operand MLP 1.005x-1.063x
(three runs), Omnigrok's MNIST MLP 1.00x. The function is the same; float results differ by
summation order only.

On XLA:CPU a narrow kernel's gradient (N < K, N <= 128: the operand MLP's and the
transformer's read-outs, the transformer's FFN down-projection, MNIST's 200 -> 10) is computed
as (g^T @ x)^T instead, with g^T and the product materialised (`_kernel_grad_from_g_transposed`):
XLA's own dot is slow for the rows-of-both contraction when N is small, YNNPACK's untransposed
dot is not. Interleaved A/B in one process (R = 32, MNIST R = 8; idle 2-core Xeon; 8-10 calls
each): the operand MLP 1.064x, the transformer 1.027x, MNIST 1.002x (without the N <= 128
bound, which keeps MNIST's 784 -> 200 on the plain dot: 0.970x). Other platforms keep the plain
dot (`lax.platform_dependent`).

`take_rows(table, index)` is `table[index]` for the gathers of small tables (the vocabulary's
rows): in bfloat16 it gathers from a float32 copy, so that the backward pass's scatter-add of
many batch rows into few table rows accumulates in float32.

`dot_general` adapts it to Flax's `Dense`/`DenseGeneral` (`dot_general=` argument): their
contraction of the input's trailing axes with the kernel's leading axes, flattened to one
matmul; any other contraction is left to `jax.lax.dot_general`.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_ROWS = (((1,), (0,)), ((), ()))  # (M, K) x (K, N): contract K
_ROWS_OF_BOTH = (((0,), (0,)), ((), ()))  # (M, K) x (M, N): contract M


def matmul(x, w, precision=None):
    """x (M, K) @ w (K, N). `precision` (as `lax.dot_general`'s) is used forward and backward;
    None: the default matmul precision in effect now (`jax.default_matmul_precision`), read
    here because the backward pass is traced later, outside any such context."""
    if precision is None:
        precision = jax.config.jax_default_matmul_precision
    return _matmul(x, w, precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul(x, w, precision):
    return lax.dot_general(x, w, _ROWS, precision=precision)


def _forward(x, w, precision):
    return _matmul(x, w, precision), (x, w)


def _kernel_grad(x, g, precision):
    """x^T @ g, (K, N): one dot contracting the rows of x (M, K) and g (M, N)."""
    return lax.dot_general(x, g, _ROWS_OF_BOTH, precision=precision)


def _kernel_grad_from_g_transposed(x, g, precision):
    """x^T @ g as (g^T @ x)^T, for narrow kernels on XLA:CPU (`_is_narrow`). g^T (N, M) and
    the product (N, K) are materialised (behind `optimization_barrier`, else XLA folds the
    transposes back into the dot), so the dot is an untransposed (N, M) x (M, K) product, which
    XLA:CPU gives YNNPACK, while XLA's own dot for the rows-of-both form is slow for narrow N.
    The copies are of the narrow arrays. Jitted loops on an idle 2-core Xeon, both devices
    busy, (M, K, N): 256x256x25 0.146 -> 0.072 ms, 256x200x10 0.047 -> 0.020, 512x128x99
    0.244 -> 0.188, 512x512x128 0.95 -> 0.72; no gain or a loss for wider kernels: 256x784x200
    0.829 -> 0.824, 256x200x200 0.235 -> 0.329, 512x128x512 0.69 -> 0.82."""
    gt = lax.optimization_barrier(g.T)
    return lax.optimization_barrier(lax.dot_general(gt, x, _ROWS, precision=precision)).T


def _is_narrow(k: int, n: int) -> bool:
    """A kernel (K, N) whose gradient XLA:CPU computes faster as `_kernel_grad_from_g_transposed`:
    fewer outputs than inputs, and at most 128 (measured on one machine, an AVX-512 Xeon)."""
    return n < k and n <= 128


def _backward(precision, res, g):
    x, w = res
    # g (M, N) . w (K, N) over N; x (M, K) . g (M, N) over M
    dx = lax.dot_general(g, w, (((1,), (1,)), ((), ())), precision=precision)
    if _is_narrow(*w.shape):  # on CPU through g's transpose
        dw = lax.platform_dependent(
            x, g, cpu=functools.partial(_kernel_grad_from_g_transposed, precision=precision),
            default=functools.partial(_kernel_grad, precision=precision))
    else:
        dw = _kernel_grad(x, g, precision)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_matmul.defvjp(_forward, _backward)


def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """`lax.dot_general` for Flax's dense layers, through `matmul` when the input's trailing
    axes are contracted with the kernel's leading ones (no batch axes, no output type);
    otherwise `lax.dot_general` itself."""
    (lc, rc), (lb, rb) = dimension_numbers
    n = len(lc)
    if (lb or rb or preferred_element_type is not None
            or tuple(lc) != tuple(range(lhs.ndim - n, lhs.ndim)) or tuple(rc) != tuple(range(n))):
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
    k = math.prod(rhs.shape[:n])
    out = matmul(lhs.reshape(-1, k), rhs.reshape(k, -1), precision)
    return out.reshape(lhs.shape[:lhs.ndim - n] + rhs.shape[n:])


def take_rows(table, index):
    """`table[index]` (any NumPy index). For a dtype narrower than float32 (bfloat16) the rows
    are gathered from the table cast to float32 and cast back: the same values, but the
    gradient, a scatter-add of every gathered row into the table's few rows (the vocabulary's:
    hundreds of batch rows into ~100), is summed in float32, not rounded to bfloat16 at every
    addition. On an H200 the bfloat16 model with bfloat16 scatter-adds trained 13x slower than
    with TF32 matmuls (results/benchmarks/gpu_h200_precisions_mlp.md)."""
    if jnp.dtype(table.dtype).itemsize >= 4:
        return table[index]
    return table.astype(jnp.float32)[index].astype(table.dtype)


def embed_rows(embed: nn.Embed, tokens, dtype):
    """`embed(tokens)` computed in `dtype` (None: the embedding's own) with `take_rows`'
    float32 gradient: `embed` is an `nn.Embed` left in its parameters' dtype, its rows cast
    after the gather."""
    rows = embed(tokens)
    return rows if dtype is None else rows.astype(dtype)


# Flax's dense layers with this matmul (same parameters, names and initializers)
Dense = functools.partial(nn.Dense, dot_general=dot_general)
DenseGeneral = functools.partial(nn.DenseGeneral, dot_general=dot_general)
