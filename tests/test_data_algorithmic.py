"""Behaviour tests for jgrok.data.algorithmic against direct Python computations."""

import itertools

import numpy as np
import pytest

from jgrok.data import groups
from jgrok.data.algorithmic import OPERATIONS, Task, known_ops, make_task
from jgrok.errors import ConfigError

OPENAI_GROK_OPS = [
    "add", "sub", "mul", "div", "x2_plus_y", "x3_plus_y", "x2_plus_y2", "x2_plus_xy_plus_y2",
    "x2_plus_xy_plus_y2_plus_x", "x3_plus_xy", "x3_plus_xy2_plus_y", "div_odd_sub_even",
    "add_even_mul_odd", "add_even_sub_odd", "s5", "s5_conj", "s5_aba",
]


def _reference(op, x, y, p):
    """Plain-Python answer, or None when the pair is excluded."""
    inv = lambda v: pow(v, p - 2, p)  # noqa: E731
    if op in ("div", "div_odd_sub_even") and y == 0:
        return None
    return {
        "add": lambda: x + y,
        "sub": lambda: x - y,
        "mul": lambda: x * y,
        "div": lambda: x * inv(y),
        "x2_plus_y": lambda: x**2 + y,
        "x3_plus_y": lambda: x**3 + y,
        "x2_plus_y2": lambda: x**2 + y**2,
        "x2_plus_xy_plus_y2": lambda: x**2 + x * y + y**2,
        "x2_plus_xy_plus_y2_plus_x": lambda: x**2 + x * y + y**2 + x,
        "x3_plus_xy": lambda: x**3 + x * y,
        "x3_plus_xy2_plus_y": lambda: x**3 + x * y**2 + y,
        "div_odd_sub_even": lambda: x * inv(y) if y % 2 == 1 else x - y,
        "add_even_mul_odd": lambda: x + y if x % 2 == 0 else x * y,
        "add_even_sub_odd": lambda: x + y if x % 2 == 0 else x - y,
    }[op]() % p


MOD_OPS = [o for o in OPENAI_GROK_OPS if not o.startswith("s5")]


def test_registry_covers_openai_grok_ops():
    assert set(OPENAI_GROK_OPS) <= set(OPERATIONS)
    assert known_ops() == list(OPERATIONS)


@pytest.mark.parametrize("p", [7, 11])
@pytest.mark.parametrize("op", MOD_OPS)
def test_modular_op_matches_python_loop(op, p):
    task = make_task(op, p)
    expected_inputs, expected_targets = [], []
    for x in range(p):
        for y in range(p):
            z = _reference(op, x, y, p)
            if z is not None:
                expected_inputs.append([x, p, y, p + 1])
                expected_targets.append(z)
    np.testing.assert_array_equal(task.inputs, np.array(expected_inputs))
    np.testing.assert_array_equal(task.targets, np.array(expected_targets))
    n_expected = p * (p - 1) if op in ("div", "div_odd_sub_even") else p * p
    assert len(task.targets) == n_expected
    assert task.inputs.dtype == np.int32 and task.targets.dtype == np.int32


@pytest.mark.parametrize("op", MOD_OPS)
def test_operations_callable_directly(op):
    p = 13
    x = np.array([3, 5, 12]); y = np.array([1, 7, 2])
    got = OPERATIONS[op](x, y, p)
    assert [int(v) for v in got] == [_reference(op, a, b, p) for a, b in zip(x.tolist(), y.tolist())]


def test_div_is_inverse_of_mul():
    p = 97
    task = make_task("div", p)
    x, y, z = task.inputs[:, 0].astype(int), task.inputs[:, 2].astype(int), task.targets.astype(int)
    assert np.all((z * y) % p == x)
    assert len(task) == p * (p - 1)


def test_token_layout_and_vocab():
    task = make_task("add", 97)
    assert isinstance(task, Task)
    assert task.n_elements == 97 and task.vocab_size == 99
    assert task.op_token == 97 and task.eq_token == 98
    assert task.inputs.shape == (97 * 97, 4)
    assert np.all(task.inputs[:, 1] == 97) and np.all(task.inputs[:, 3] == 98)
    assert task.inputs[:, [0, 2]].max() == 96 and task.targets.max() == 96
    assert task.element_names == tuple(str(i) for i in range(97))
    # row-major: x outer, y inner
    assert task.inputs[:3, 0].tolist() == [0, 0, 0] and task.inputs[:3, 2].tolist() == [0, 1, 2]
    assert task.inputs[97, 0] == 1 and task.inputs[97, 2] == 0
    with pytest.raises(ValueError):
        task.inputs[0, 0] = 5  # read-only


def test_non_prime_modulus_allowed_for_non_division_ops():
    task = make_task("add", 10)
    assert task.n_elements == 10 and len(task) == 100


@pytest.mark.parametrize("op", ["div", "div_odd_sub_even"])
def test_non_prime_division_error(op):
    with pytest.raises(ConfigError) as ei:
        make_task(op, 91)
    msg = str(ei.value)
    assert "p=91 is not prime" in msg and f"'{op}' needs a prime modulus" in msg
    assert "\n" not in msg


def test_unknown_op_lists_known_ops():
    with pytest.raises(ConfigError) as ei:
        make_task("pow", 97)
    msg = str(ei.value)
    assert "'pow'" in msg and "group:<path>" in msg and "\n" not in msg
    for op in OPENAI_GROK_OPS:
        assert op in msg


@pytest.mark.parametrize("p", [1, 0, -5, 2.5, "97", True])
def test_bad_modulus(p):
    with pytest.raises(ConfigError) as ei:
        make_task("add", p)
    assert "\n" not in str(ei.value)


def test_smallest_modulus():
    task = make_task("div", 2)
    assert task.inputs[:, [0, 2]].tolist() == [[0, 1], [1, 1]] and task.targets.tolist() == [0, 1]


def test_s5_tasks_match_permutation_computations():
    perms = list(itertools.permutations(range(5)))
    rng = np.random.default_rng(0)

    def comp(a, b):
        return tuple(a[b[i]] for i in range(5))

    def inv(a):
        out = [0] * 5
        for i, v in enumerate(a):
            out[v] = i
        return tuple(out)

    ref = {
        "s5": lambda a, b: comp(a, b),
        "s5_conj": lambda a, b: comp(comp(a, b), inv(a)),
        "s5_aba": lambda a, b: comp(comp(a, b), a),
    }
    for op, f in ref.items():
        task = make_task(op, p=1)  # p ignored
        assert task.n_elements == 120 and task.vocab_size == 122 and len(task) == 120 * 120
        assert task.element_names[0] == "01234" and len(set(task.element_names)) == 120
        assert np.all(task.inputs[:, 1] == 120) and np.all(task.inputs[:, 3] == 121)
        for k in rng.choice(len(task), size=200, replace=False):
            a, b = perms[task.inputs[k, 0]], perms[task.inputs[k, 2]]
            assert perms[task.targets[k]] == f(a, b)
        a, b = task.inputs[k, 0], task.inputs[k, 2]
        assert k == a * 120 + b


def test_group_task_from_example_and_path(tmp_path):
    t1 = make_task("group:dihedral_d10")
    assert t1.n_elements == 20 and t1.vocab_size == 22 and len(t1) == 400
    assert t1.element_names[0] == "r0"
    labels, table = groups.dihedral_group(10)
    np.testing.assert_array_equal(t1.targets.reshape(20, 20), table)

    path = tmp_path / "z3.csv"
    groups.write_cayley_csv(path, ["e", "a", "b"], np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1]]))
    t2 = make_task(f"group:{path}", p=1)
    assert t2.element_names == ("e", "a", "b")
    assert t2.inputs.tolist()[5] == [1, 3, 2, 4] and t2.targets[5] == 0

    t3 = make_task("group:frobenius_21")
    assert t3.n_elements == 21 and len(t3) == 441


def test_group_task_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        make_task(f"group:{tmp_path / 'nope.csv'}")
    with pytest.raises(ConfigError):
        make_task("group:")
