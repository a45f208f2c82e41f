"""Binary-operation tasks ``x ∘ y = z`` as token sequences (Power et al. 2022, openai/grok ops).

Every equation is the 4-token sequence ``[x, OP, y, EQ]`` with target token ``z``. Operand tokens
are ``0..n_elements-1``; ``OP = n_elements`` and ``EQ = n_elements + 1`` so
``vocab_size = n_elements + 2``. Equations enumerate all pairs in row-major order (``x`` outer,
``y`` inner), skipping ``y = 0`` for the division ops (``div``, ``div_odd_sub_even``), which
therefore have ``p(p-1)`` equations and need a prime ``p``.

Operations (all modulo ``p`` unless noted), see :data:`OPERATIONS`:

* ``add`` x+y, ``sub`` x−y, ``mul`` x·y, ``div`` x·y⁻¹ (y≠0),
* ``x2_plus_y``, ``x3_plus_y``, ``x2_plus_y2``, ``x2_plus_xy_plus_y2``,
  ``x2_plus_xy_plus_y2_plus_x``, ``x3_plus_xy``, ``x3_plus_xy2_plus_y``,
* ``div_odd_sub_even`` (x/y if y odd else x−y; y≠0), ``add_even_mul_odd`` (x+y if x even else
  x·y), ``add_even_sub_odd`` (x+y if x even else x−y),
* ``s5`` a∘b, ``s5_conj`` a∘b∘a⁻¹, ``s5_aba`` a∘b∘a over the 120 permutations of 5
  (``p`` ignored; elements indexed as in :func:`jgrok.data.groups.s5_elements`),
* ``group:<path>``: a Cayley table CSV (:func:`jgrok.data.groups.load_cayley_csv`); a shipped
  example may be named without path or suffix, e.g. ``group:dihedral_d10`` (see
  :data:`jgrok.data.groups.EXAMPLE_TABLES`). ``p`` is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from jgrok.data import groups
from jgrok.errors import ConfigError

__all__ = ["OPERATIONS", "Task", "make_task", "known_ops", "is_prime", "MAX_P"]

#: Largest modulus accepted (p² equations must stay far below int32 indexing limits).
MAX_P = 46_340


def is_prime(n: int) -> bool:
    """Deterministic trial-division primality test (fine for n ≤ MAX_P)."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def _inv(y: np.ndarray, p: int) -> np.ndarray:
    """Modular inverse y^(p-2) mod p for prime p (0 maps to 0)."""
    table = np.array([pow(v, p - 2, p) if v else 0 for v in range(p)], dtype=np.int64)
    return table[np.asarray(y) % p]


def _m(a, b, p):
    """(a*b) mod p on int64 residues (a, b < p so a*b < 2^63)."""
    return (a % p) * (b % p) % p


def _div(x, y, p):
    return _m(x, _inv(y, p), p)


def _s5_op(kind: str) -> Callable:
    def op(x, y, p=None):
        return groups.s5_table(kind)[np.asarray(x), np.asarray(y)]

    op.__name__ = f"s5_{kind}"
    return op


#: Readable op name -> f(x, y, p) on numpy int arrays, returning the answer (mod p) elementwise.
OPERATIONS: dict[str, Callable] = {
    "add": lambda x, y, p: (x + y) % p,
    "sub": lambda x, y, p: (x - y) % p,
    "mul": lambda x, y, p: _m(x, y, p),
    "div": _div,
    "x2_plus_y": lambda x, y, p: (_m(x, x, p) + y) % p,
    "x3_plus_y": lambda x, y, p: (_m(_m(x, x, p), x, p) + y) % p,
    "x2_plus_y2": lambda x, y, p: (_m(x, x, p) + _m(y, y, p)) % p,
    "x2_plus_xy_plus_y2": lambda x, y, p: (_m(x, x, p) + _m(x, y, p) + _m(y, y, p)) % p,
    "x2_plus_xy_plus_y2_plus_x": lambda x, y, p: (_m(x, x, p) + _m(x, y, p) + _m(y, y, p) + x) % p,
    "x3_plus_xy": lambda x, y, p: (_m(_m(x, x, p), x, p) + _m(x, y, p)) % p,
    "x3_plus_xy2_plus_y": lambda x, y, p: (_m(_m(x, x, p), x, p) + _m(x, _m(y, y, p), p) + y) % p,
    "div_odd_sub_even": lambda x, y, p: np.where(y % 2 == 1, _div(x, y, p), (x - y) % p),
    "add_even_mul_odd": lambda x, y, p: np.where(x % 2 == 0, (x + y) % p, _m(x, y, p)),
    "add_even_sub_odd": lambda x, y, p: np.where(x % 2 == 0, (x + y) % p, (x - y) % p),
    "s5": _s5_op("compose"),
    "s5_conj": _s5_op("conj"),
    "s5_aba": _s5_op("aba"),
}

_NONZERO_Y = frozenset({"div", "div_odd_sub_even"})  # y = 0 excluded; modulus must be prime
_S5_OPS = {"s5": "compose", "s5_conj": "conj", "s5_aba": "aba"}
GROUP_PREFIX = "group:"


@dataclass(frozen=True, eq=False)
class Task:
    """All equations of one binary operation, tokenised (arrays are read-only).

    ``inputs[k] = [x, OP, y, EQ]``, ``targets[k] = x ∘ y``; ``OP = n_elements``,
    ``EQ = n_elements + 1``; ``element_names[t]`` labels operand token ``t``.
    """

    name: str
    inputs: np.ndarray
    targets: np.ndarray
    n_elements: int
    vocab_size: int
    element_names: tuple[str, ...]

    @property
    def op_token(self) -> int:
        return self.n_elements

    @property
    def eq_token(self) -> int:
        return self.n_elements + 1

    @property
    def n_equations(self) -> int:
        return int(self.inputs.shape[0])

    def __len__(self) -> int:
        return self.n_equations


def known_ops() -> list[str]:
    """Names in :data:`OPERATIONS` (``group:<path>`` is accepted in addition)."""
    return list(OPERATIONS)


def _build(name: str, x: np.ndarray, y: np.ndarray, z: np.ndarray, n: int, names) -> Task:
    inputs = np.stack(
        [x, np.full_like(x, n), y, np.full_like(x, n + 1)], axis=1
    ).astype(np.int32)
    targets = np.asarray(z).astype(np.int32)
    inputs.setflags(write=False)
    targets.setflags(write=False)
    return Task(name=name, inputs=inputs, targets=targets, n_elements=int(n), vocab_size=int(n) + 2,
                element_names=tuple(names))


def _pairs(n: int, skip_y0: bool = False) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), indexing="ij")
    x, y = xs.ravel(), ys.ravel()
    if skip_y0:
        keep = y != 0
        x, y = x[keep], y[keep]
    return x, y


def _resolve_group_path(spec: str) -> Path:
    if not spec:
        raise ConfigError(f"'{GROUP_PREFIX}' needs a Cayley table CSV path or an example name "
                          f"({', '.join(groups.EXAMPLE_TABLES)})")
    if spec in groups.EXAMPLE_TABLES:
        return groups.EXAMPLE_TABLES[spec]
    path = Path(spec).expanduser()
    if not path.exists() and path.suffix == "" and path.with_suffix(".csv").exists():
        return path.with_suffix(".csv")
    return path


def make_task(op: str, p: int = 97) -> Task:
    """Build the full equation table for ``op`` (see module docstring).

    Raises :class:`ConfigError` for an unknown op, a modulus that is not an int ≥ 2 (or above
    :data:`MAX_P`), a non-prime modulus for the division ops, or an invalid group table.
    """
    if not isinstance(op, str):
        raise ConfigError(f"operation must be a string, got {type(op).__name__}")

    if op.startswith(GROUP_PREFIX):
        spec = op[len(GROUP_PREFIX):].strip()
        labels, table = groups.load_cayley_csv(_resolve_group_path(spec))
        n = len(labels)
        x, y = _pairs(n)
        stem = spec if spec in groups.EXAMPLE_TABLES else Path(spec).stem
        return _build(f"{GROUP_PREFIX}{stem}", x, y, table[x, y], n, labels)

    if op not in OPERATIONS:
        raise ConfigError(
            f"unknown operation {op!r}; known operations: {', '.join(known_ops())}, "
            f"or '{GROUP_PREFIX}<path>' for a Cayley table CSV"
        )

    if op in _S5_OPS:
        names = tuple(groups.perm_name(a) for a in groups.s5_elements())
        x, y = _pairs(len(names))
        return _build(op, x, y, OPERATIONS[op](x, y, None), len(names), names)

    if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
        raise ConfigError(f"modulus p must be an int, got {p!r} ({type(p).__name__})")
    p = int(p)
    if p < 2:
        raise ConfigError(f"modulus p must be >= 2, got p={p}")
    if p > MAX_P:
        raise ConfigError(f"modulus p={p} is too large (p*p equations); the maximum is {MAX_P}")
    if op in _NONZERO_Y and not is_prime(p):
        raise ConfigError(f"p={p} is not prime; {op!r} needs a prime modulus")

    x, y = _pairs(p, skip_y0=op in _NONZERO_Y)
    z = OPERATIONS[op](x, y, p)
    return _build(f"{op}_p{p}", x, y, z, p, [str(i) for i in range(p)])
