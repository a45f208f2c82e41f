"""Finite groups as Cayley tables: S5, generated example groups, and CSV tables.

Conventions
-----------
* A Cayley table is an ``(n, n)`` integer array ``table`` with ``table[i, j]`` = index of
  ``element_i * element_j`` (row element on the left).
* Permutations are tuples ``a`` with ``a[i]`` the image of ``i``. Composition is function
  composition, right factor applied first: ``compose(a, b)[i] == a[b[i]]``, i.e. ``(a∘b)(i) = a(b(i))``.
* S5's 120 elements are indexed in the lexicographic order of ``itertools.permutations(range(5))``
  (index 0 is the identity ``01234``).

CSV format (see :func:`load_cayley_csv`)::

    *,e,a,b
    e,e,a,b
    a,a,b,e
    b,b,e,a

The header's first cell is ignored (empty or any label such as ``*``); the remaining header cells
are the column element labels. Each following row is a row element label followed by ``n`` entries.
Row labels must equal the column labels in the same order.

Example tables
--------------
Two example tables ship in ``jgrok/data/tables/`` (see :data:`EXAMPLE_TABLES`):

* ``dihedral_d10.csv``: the dihedral group D_10 of the regular 10-gon (order 20), from
  :func:`dihedral_group` with ``n=10``.
* ``frobenius_21.csv``: the Frobenius group Z7 ⋊ Z3 (order 21, the smallest non-abelian group of
  odd order), from :func:`semidirect_z7_z3`.

Regenerate them with ``python -m jgrok.data.groups``.
"""

from __future__ import annotations

import csv
import itertools
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from jgrok.errors import ConfigError

__all__ = [
    "EXAMPLE_TABLES",
    "TABLES_DIR",
    "S5_KINDS",
    "s5_elements",
    "perm_name",
    "compose",
    "inverse",
    "s5_table",
    "check_group_axioms",
    "load_cayley_csv",
    "write_cayley_csv",
    "dihedral_group",
    "semidirect_z7_z3",
    "is_abelian",
]

TABLES_DIR = Path(__file__).parent / "tables"

#: Short name -> path of the shipped example Cayley tables.
EXAMPLE_TABLES: dict[str, Path] = {
    "dihedral_d10": TABLES_DIR / "dihedral_d10.csv",
    "frobenius_21": TABLES_DIR / "frobenius_21.csv",
}

Perm = tuple[int, ...]


# --------------------------------------------------------------------------------------------
# Permutations and S5
# --------------------------------------------------------------------------------------------


def s5_elements() -> tuple[Perm, ...]:
    """The 120 permutations of ``range(5)`` in lexicographic order (index 0 = identity)."""
    return _s5_elements()


@lru_cache(maxsize=None)
def _s5_elements() -> tuple[Perm, ...]:
    return tuple(itertools.permutations(range(5)))


def perm_name(a: Sequence[int]) -> str:
    """One-line notation label of a permutation, e.g. ``(1, 0, 2, 3, 4)`` -> ``"10234"``."""
    return "".join(str(int(v)) for v in a)


def compose(a: Sequence[int], b: Sequence[int]) -> Perm:
    """Composition ``a∘b`` of permutations: ``(a∘b)(i) = a(b(i))`` (``b`` is applied first)."""
    return tuple(a[b[i]] for i in range(len(b)))


def inverse(a: Sequence[int]) -> Perm:
    """Inverse permutation: ``compose(a, inverse(a))`` is the identity."""
    inv = [0] * len(a)
    for i, v in enumerate(a):
        inv[v] = i
    return tuple(inv)


S5_KINDS = ("compose", "conj", "aba")


def s5_table(kind: str = "compose") -> np.ndarray:
    """120x120 table over S5 (indices as in :func:`s5_elements`), read-only int64.

    ``kind``: ``"compose"`` -> ``a∘b``; ``"conj"`` -> ``a∘b∘a⁻¹``; ``"aba"`` -> ``a∘b∘a``.
    Only ``"compose"`` is a group operation.
    """
    if kind not in S5_KINDS:
        raise ConfigError(f"unknown S5 table kind {kind!r}; expected one of {', '.join(S5_KINDS)}")
    return _s5_table(kind)


@lru_cache(maxsize=None)
def _s5_table(kind: str) -> np.ndarray:
    elems = _s5_elements()
    index = {p: i for i, p in enumerate(elems)}
    table = np.empty((len(elems), len(elems)), dtype=np.int64)
    for i, a in enumerate(elems):
        a_inv = inverse(a)
        for j, b in enumerate(elems):
            ab = compose(a, b)
            if kind == "compose":
                r = ab
            elif kind == "conj":
                r = compose(ab, a_inv)
            else:
                r = compose(ab, a)
            table[i, j] = index[r]
    table.setflags(write=False)
    return table


# --------------------------------------------------------------------------------------------
# Group axioms
# --------------------------------------------------------------------------------------------


def check_group_axioms(
    table: np.ndarray, labels: Sequence[str] | None = None, source: str | None = None
) -> None:
    """Raise :class:`ConfigError` naming the first violated group axiom of a Cayley table.

    Checks, in order: square shape, closure (entries in ``0..n-1``), identity, inverses,
    associativity (vectorised over all ``n³`` triples). ``labels`` name elements in messages;
    ``source`` (e.g. a file name) prefixes them.
    """
    prefix = f"{source}: " if source else ""
    t = np.asarray(table)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] == 0:
        raise ConfigError(f"{prefix}Cayley table must be a non-empty square (n, n) array, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ConfigError(f"{prefix}Cayley table must hold integer element indices, got dtype {t.dtype}")
    n = t.shape[0]
    if labels is None:
        labels = [str(i) for i in range(n)]
    name = [str(x) for x in labels]

    bad = np.argwhere((t < 0) | (t >= n))
    if bad.size:
        i, j = bad[0]
        raise ConfigError(
            f"{prefix}closure fails: entry ({name[i]}, {name[j]}) = {int(t[i, j])} is not an element index 0..{n - 1}"
        )

    ar = np.arange(n)
    ident = [e for e in range(n) if np.array_equal(t[e, :], ar) and np.array_equal(t[:, e], ar)]
    if not ident:
        raise ConfigError(f"{prefix}no identity element: no e with e*x = x*e = x for every x")
    e = ident[0]

    for a in range(n):
        if not np.any((t[a, :] == e) & (t[:, a] == e)):
            raise ConfigError(
                f"{prefix}element {name[a]!r} has no inverse (no b with {name[a]}*b = b*{name[a]} = {name[e]})"
            )

    idx = t.astype(np.int32 if n < 2**31 else np.int64)
    left = idx[idx, :]  # left[a, b, c] = (a*b)*c
    right = idx[ar[:, None, None], idx[None, :, :]]  # right[a, b, c] = a*(b*c)
    bad = np.argwhere(left != right)
    if bad.size:
        a, b, c = (int(v) for v in bad[0])
        raise ConfigError(
            f"{prefix}not associative: for (a, b, c) = ({name[a]}, {name[b]}, {name[c]}), "
            f"(ab)c = {name[left[a, b, c]]} but a(bc) = {name[right[a, b, c]]}"
        )


def is_abelian(table: np.ndarray) -> bool:
    """Whether the operation is commutative."""
    t = np.asarray(table)
    return bool(np.array_equal(t, t.T))


# --------------------------------------------------------------------------------------------
# CSV I/O
# --------------------------------------------------------------------------------------------


def load_cayley_csv(path: str | Path) -> tuple[tuple[str, ...], np.ndarray]:
    """Load and validate a Cayley table CSV (format in the module docstring).

    Returns ``(labels, table)`` with ``table[i, j]`` = index of ``labels[i] * labels[j]``.
    Raises :class:`ConfigError` naming the first problem and the file: missing/empty file,
    ragged row, duplicate labels, row labels differing from column labels, unknown entry
    (closure), no identity, an element without inverse, or an associativity failure.
    """
    path = Path(path)
    fname = str(path)
    if not path.is_file():
        raise ConfigError(f"{fname}: Cayley table file not found")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            raw = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{fname}: cannot read Cayley table CSV: {exc}") from None

    # Keep (line number, stripped cells) for non-blank lines.
    rows = [(ln, [c.strip() for c in r]) for ln, r in enumerate(raw, start=1) if any(c.strip() for c in r)]
    if not rows:
        raise ConfigError(f"{fname}: Cayley table file is empty")

    _, header = rows[0]
    labels = tuple(header[1:])
    n = len(labels)
    if n == 0:
        raise ConfigError(f"{fname}: header row has no column labels (expected a corner cell then n labels)")
    for k, lab in enumerate(labels):
        if lab == "":
            raise ConfigError(f"{fname}: header column {k + 1} has an empty label")
    seen: dict[str, int] = {}
    for k, lab in enumerate(labels):
        if lab in seen:
            raise ConfigError(f"{fname}: duplicate label {lab!r} in header (columns {seen[lab] + 1} and {k + 1})")
        seen[lab] = k

    body = rows[1:]
    for r, (ln, cells) in enumerate(body, start=1):
        if len(cells) != n + 1:
            raise ConfigError(
                f"{fname}: ragged row {r} (line {ln}): expected {n + 1} cells (label + {n} entries), got {len(cells)}"
            )
    if len(body) != n:
        raise ConfigError(f"{fname}: expected {n} table rows (one per column label), got {len(body)}")

    row_labels = [cells[0] for _, cells in body]
    row_seen: dict[str, int] = {}
    for r, lab in enumerate(row_labels, start=1):
        if lab in row_seen:
            raise ConfigError(f"{fname}: duplicate row label {lab!r} (rows {row_seen[lab]} and {r})")
        row_seen[lab] = r
    for r, (lab, col) in enumerate(zip(row_labels, labels), start=1):
        if lab != col:
            raise ConfigError(
                f"{fname}: row {r} label {lab!r} does not match column label {col!r} "
                "(row labels must equal the column labels in the same order)"
            )

    table = np.empty((n, n), dtype=np.int64)
    for r, (ln, cells) in enumerate(body):
        for c, val in enumerate(cells[1:]):
            k = seen.get(val)
            if k is None:
                raise ConfigError(
                    f"{fname}: closure fails: entry at row {labels[r]!r}, column {labels[c]!r} (line {ln}) "
                    f"is {val!r}, which is not an element label"
                )
            table[r, c] = k

    check_group_axioms(table, labels, source=fname)
    return labels, table


def write_cayley_csv(path: str | Path, labels: Sequence[str], table: np.ndarray) -> None:
    """Write a Cayley table in the CSV format read by :func:`load_cayley_csv` (corner cell ``*``)."""
    labels = [str(x) for x in labels]
    t = np.asarray(table)
    n = len(labels)
    if t.shape != (n, n):
        raise ConfigError(f"table shape {t.shape} does not match {n} labels")
    if len(set(labels)) != n:
        raise ConfigError("labels must be unique")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["*", *labels])
        for i in range(n):
            w.writerow([labels[i], *(labels[int(k)] for k in t[i])])


# --------------------------------------------------------------------------------------------
# Generated groups
# --------------------------------------------------------------------------------------------


def dihedral_group(n: int) -> tuple[tuple[str, ...], np.ndarray]:
    """Dihedral group D_n of the regular n-gon, order ``2n`` (non-abelian for n ≥ 3).

    Elements ``r{k} = r^k`` (rotations) and ``s{k} = r^k s`` (reflections), k = 0..n-1, in that
    order; ``r0`` is the identity. Multiplication: ``(r^a s^f)(r^b s^g) = r^(a + (-1)^f b) s^(f+g)``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"dihedral group needs an integer n >= 1, got {n!r}")
    n = int(n)
    labels = tuple([f"r{k}" for k in range(n)] + [f"s{k}" for k in range(n)])
    table = np.empty((2 * n, 2 * n), dtype=np.int64)
    for i in range(2 * n):
        f, a = divmod(i, n)
        for j in range(2 * n):
            g, b = divmod(j, n)
            k = (a + (b if f == 0 else -b)) % n
            table[i, j] = ((f + g) % 2) * n + k
    return labels, table


def semidirect_z7_z3() -> tuple[tuple[str, ...], np.ndarray]:
    """The Frobenius group Z7 ⋊ Z3 of order 21 (non-abelian).

    Elements ``(a, b)`` with a ∈ Z7, b ∈ Z3, labelled ``"a{a}b{b}"`` and ordered with ``b`` outer,
    ``a`` inner (``a0b0`` is the identity). Multiplication uses the automorphism x -> 2x of Z7
    (2 has order 3 mod 7): ``(a1, b1)(a2, b2) = (a1 + 2^b1 · a2 mod 7, b1 + b2 mod 3)``.
    """
    elems = [(a, b) for b in range(3) for a in range(7)]
    index = {e: i for i, e in enumerate(elems)}
    labels = tuple(f"a{a}b{b}" for a, b in elems)
    table = np.empty((21, 21), dtype=np.int64)
    for i, (a1, b1) in enumerate(elems):
        for j, (a2, b2) in enumerate(elems):
            table[i, j] = index[((a1 + pow(2, b1) * a2) % 7, (b1 + b2) % 3)]
    return labels, table


_EXAMPLE_GENERATORS = {
    "dihedral_d10": lambda: dihedral_group(10),
    "frobenius_21": semidirect_z7_z3,
}


def regenerate_example_tables() -> list[Path]:
    """(Re)write the shipped example tables in :data:`EXAMPLE_TABLES`; returns the paths."""
    out = []
    for name, gen in _EXAMPLE_GENERATORS.items():
        labels, table = gen()
        check_group_axioms(table, labels, source=name)
        write_cayley_csv(EXAMPLE_TABLES[name], labels, table)
        out.append(EXAMPLE_TABLES[name])
    return out


if __name__ == "__main__":
    for p in regenerate_example_tables():
        print(f"wrote {p}")
