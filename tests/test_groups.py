"""Behaviour tests for jgrok.data.groups: S5, generated groups, Cayley CSV validation."""

import itertools

import numpy as np
import pytest

from jgrok.data import groups
from jgrok.data.groups import (
    EXAMPLE_TABLES,
    check_group_axioms,
    compose,
    dihedral_group,
    inverse,
    is_abelian,
    load_cayley_csv,
    s5_elements,
    s5_table,
    semidirect_z7_z3,
    write_cayley_csv,
)
from jgrok.errors import ConfigError


def _write(path, rows):
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")
    return path


def _err(path):
    with pytest.raises(ConfigError) as ei:
        load_cayley_csv(path)
    msg = str(ei.value)
    assert "\n" not in msg
    assert path.name in msg
    return msg


Z3 = [["*", "e", "a", "b"], ["e", "e", "a", "b"], ["a", "a", "b", "e"], ["b", "b", "e", "a"]]


# ---------------------------------------------------------------- permutations / S5

def test_s5_elements_and_compose_semantics():
    elems = s5_elements()
    assert len(elems) == 120 and len(set(elems)) == 120
    assert list(elems) == list(itertools.permutations(range(5)))
    a, b = (1, 2, 0, 3, 4), (0, 1, 2, 4, 3)
    assert compose(a, b) == tuple(a[b[i]] for i in range(5)) == (1, 2, 0, 4, 3)
    assert compose(a, inverse(a)) == tuple(range(5)) == compose(inverse(a), a)


def test_s5_table_is_a_group():
    t = s5_table("compose")
    assert t.shape == (120, 120)
    check_group_axioms(t)
    assert not is_abelian(t)
    elems = s5_elements()
    assert all(elems[t[i, j]] == compose(elems[i], elems[j]) for i in range(0, 120, 7) for j in range(120))


@pytest.mark.parametrize("kind", ["conj", "aba"])
def test_s5_conj_aba_are_not_groups(kind):
    with pytest.raises(ConfigError):
        check_group_axioms(s5_table(kind))


def test_s5_table_bad_kind():
    with pytest.raises(ConfigError):
        s5_table("nope")


# ---------------------------------------------------------------- generated groups

@pytest.mark.parametrize("n", [3, 6, 10])
def test_dihedral_group(n):
    labels, t = dihedral_group(n)
    assert len(labels) == 2 * n and labels[0] == "r0"
    check_group_axioms(t, labels)
    assert not is_abelian(t)
    r1, s0 = labels.index("r1"), labels.index("s0")
    # r^n = e, s^2 = e, s r s = r^-1
    x = 0
    for _ in range(n):
        x = t[x, r1]
    assert x == 0 and t[s0, s0] == 0
    assert t[t[s0, r1], s0] == labels.index(f"r{n - 1}")


def test_frobenius_group():
    labels, t = semidirect_z7_z3()
    assert len(labels) == 21
    check_group_axioms(t, labels)
    assert not is_abelian(t)
    # element orders: identity 1, six of order 7, fourteen of order 3
    orders = []
    for g in range(21):
        x, k = g, 1
        while x != 0:
            x, k = t[x, g], k + 1
        orders.append(k)
    assert sorted(orders) == [1] + [3] * 14 + [7] * 6


def test_shipped_tables_match_generators():
    assert set(EXAMPLE_TABLES) == {"dihedral_d10", "frobenius_21"}
    for name, gen in [("dihedral_d10", lambda: dihedral_group(10)), ("frobenius_21", semidirect_z7_z3)]:
        labels, table = load_cayley_csv(EXAMPLE_TABLES[name])
        glabels, gtable = gen()
        assert labels == glabels
        np.testing.assert_array_equal(table, gtable)
        assert not is_abelian(table)


def test_write_then_load_roundtrip(tmp_path):
    labels, t = dihedral_group(4)
    write_cayley_csv(tmp_path / "d4.csv", labels, t)
    l2, t2 = load_cayley_csv(tmp_path / "d4.csv")
    assert l2 == labels
    np.testing.assert_array_equal(t2, t)


def test_load_accepts_empty_corner_and_whitespace(tmp_path):
    p = _write(tmp_path / "z3.csv", [[""] + Z3[0][1:]] + [[" " + c for c in r] for r in Z3[1:]])
    labels, t = load_cayley_csv(p)
    assert labels == ("e", "a", "b")
    assert t.tolist() == [[0, 1, 2], [1, 2, 0], [2, 0, 1]]


# ---------------------------------------------------------------- malformed CSVs

def test_missing_file(tmp_path):
    msg = _err(tmp_path / "missing.csv")
    assert "not found" in msg


def test_empty_file(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("\n\n")
    assert "empty" in _err(p)


def test_ragged_row(tmp_path):
    rows = [r[:] for r in Z3]
    rows[2] = rows[2][:-1]
    msg = _err(_write(tmp_path / "ragged.csv", rows))
    assert "ragged row 2" in msg and "expected 4" in msg and "got 3" in msg


def test_wrong_row_count(tmp_path):
    msg = _err(_write(tmp_path / "short.csv", Z3[:3]))
    assert "expected 3 table rows" in msg and "got 2" in msg


def test_mismatched_labels(tmp_path):
    rows = [r[:] for r in Z3]
    rows[1], rows[2] = rows[2], rows[1]  # rows out of column order
    msg = _err(_write(tmp_path / "order.csv", rows))
    assert "does not match column label" in msg
    rows = [r[:] for r in Z3]
    rows[3][0] = "c"
    msg = _err(_write(tmp_path / "label.csv", rows))
    assert "'c'" in msg and "'b'" in msg


def test_duplicate_labels(tmp_path):
    rows = [["*", "e", "a", "a"], ["e", "e", "a", "a"], ["a", "a", "e", "e"], ["a", "a", "e", "e"]]
    assert "duplicate label 'a'" in _err(_write(tmp_path / "dup.csv", rows))


def test_unknown_entry_closure(tmp_path):
    rows = [r[:] for r in Z3]
    rows[2][3] = "zz"
    msg = _err(_write(tmp_path / "closure.csv", rows))
    assert "closure" in msg and "'zz'" in msg and "row 'a'" in msg and "column 'b'" in msg


def test_no_identity(tmp_path):
    # x - y mod 3: a Latin square (quasigroup) with a right identity only.
    labels = ["0", "1", "2"]
    rows = [["*"] + labels] + [[str(x)] + [str((x - y) % 3) for y in range(3)] for x in range(3)]
    assert "no identity" in _err(_write(tmp_path / "noid.csv", rows))


def test_no_inverse_monoid(tmp_path):
    # {0, 1} under multiplication: a monoid with identity 1 where 0 has no inverse.
    rows = [["*", "0", "1"], ["0", "0", "0"], ["1", "0", "1"]]
    msg = _err(_write(tmp_path / "monoid.csv", rows))
    assert "'0' has no inverse" in msg


def test_non_associative_loop(tmp_path):
    # Order-5 loop: Latin square with identity 0 and every element self-inverse, not a group.
    t = np.array([[0, 1, 2, 3, 4], [1, 0, 3, 4, 2], [2, 4, 0, 1, 3], [3, 2, 4, 0, 1], [4, 3, 1, 2, 0]])
    assert all(sorted(r) == list(range(5)) for r in t.tolist() + t.T.tolist())
    labels = [f"g{i}" for i in range(5)]
    rows = [["*"] + labels] + [[labels[i]] + [labels[k] for k in t[i]] for i in range(5)]
    msg = _err(_write(tmp_path / "loop.csv", rows))
    assert "not associative" in msg
    a, b, c = (labels.index(s) for s in msg.split("(a, b, c) = (")[1].split(")")[0].split(", "))
    assert t[t[a, b], c] != t[a, t[b, c]]


def test_check_group_axioms_shape_and_range():
    with pytest.raises(ConfigError):
        check_group_axioms(np.zeros((2, 3), dtype=int))
    with pytest.raises(ConfigError, match="closure"):
        check_group_axioms(np.array([[0, 1], [1, 2]]))


def test_associativity_check_scales():
    """The axioms are checked on tables of order 200 (D_100) and 120 (S_5): the true tables
    pass, and one swapped pair of entries in a row is found."""
    labels, t = dihedral_group(100)  # order 200
    assert t.shape == (200, 200)
    check_group_axioms(t, labels)
    s5 = s5_table()
    groups.check_group_axioms(s5)
    broken = t.copy()
    broken[7, [3, 5]] = broken[7, [5, 3]]  # still a Latin-square row, no longer the group's
    with pytest.raises(ConfigError):
        check_group_axioms(broken, labels)
