"""The models' shortcuts (`ModelConfig.shortcuts`, the default) compute the same function as the
plain computation, with the same parameters; bfloat16 computation still groks.

Tolerances: the shortcuts reorder float32 sums (a projection of the vocabulary table gathered
per row instead of a projection per row; the last block on the last position only), so outputs
are compared with an absolute tolerance of 1e-5 on logits of size ~3 (measured: at most 3.1e-6,
with position 0 of every block computed per vocabulary entry), and short training runs as in
`conftest.assert_same_training` (rtol 1e-4 / atol 1e-5 on metrics, atol 5e-5 on parameters;
AdamW turns rounding into parameter differences of a few 1e-5 in 40 steps).

`jgrok.models.linear` (the dense layers' matmul with its gradient written out) is checked
against `lax.dot_general` and JAX's own gradient of it."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_same_training, dataset_for, short_training_cfg

from jgrok import sweep, train
from jgrok.config import ExperimentConfig, ModelConfig, SweepConfig, TaskConfig, TrainConfig
from jgrok.errors import ConfigError
from jgrok.models import build_model, linear

LOGIT_ATOL = 1e-5

TRANSFORMERS = {
    "power 2-layer post-LN": ModelConfig(kind="transformer"),
    "1 layer": ModelConfig(kind="transformer", n_layers=1),
    "3 layers, biases": ModelConfig(kind="transformer", n_layers=3, use_bias=True),
    "nanda (no LN, learned positions)": ModelConfig(kind="transformer", n_layers=1,
                                                    layer_norm=False, positions="learned"),
}
MLPS = {
    "embed": ModelConfig(kind="mlp"),
    "onehot quadratic": ModelConfig(kind="mlp", mlp_input="onehot", mlp_activation="quadratic"),
    "embed, depth 1": ModelConfig(kind="mlp", mlp_depth=1, mlp_width=64, d_model=32),
}


def _tokens(p, n, seed=0):
    r = np.random.default_rng(seed)
    return jnp.asarray(np.stack([r.integers(0, p, n), np.full(n, p), r.integers(0, p, n),
                                 np.full(n, p + 1)], 1), jnp.int32)


def _pair(cfg, vocab):
    return (build_model(dataclasses.replace(cfg, shortcuts=False), vocab),
            build_model(dataclasses.replace(cfg, shortcuts=True), vocab))


@pytest.mark.parametrize("name,cfg,p,n", [(k, v, 97, 512) for k, v in TRANSFORMERS.items()]
                         + [(k, v, 23, 256) for k, v in MLPS.items()])
def test_shortcuts_give_the_plain_outputs_with_the_same_parameters(name, cfg, p, n):
    plain, fast = _pair(cfg, p + 2)
    x = _tokens(p, n)
    key = jax.random.PRNGKey(3)
    params = plain.init(key, x[:1])["params"]
    # same parameter tree and the same initial values, whatever the sample batch
    for sample in (x[:1], x):
        other = fast.init(key, sample)["params"]
        assert jax.tree.structure(other) == jax.tree.structure(params)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(other)):
            np.testing.assert_array_equal(a, b)
    # after some training-like perturbation too (not only at initialization)
    params = jax.tree.map(lambda a, k: a + 0.1 * jax.random.normal(k, a.shape),
                          params, jax.tree.unflatten(jax.tree.structure(params),
                                                     list(jax.random.split(
                                                         key, len(jax.tree.leaves(params))))))
    want = plain.apply({"params": params}, x)
    got = fast.apply({"params": params}, x)
    assert got.shape == want.shape == (n, p + 2)
    np.testing.assert_allclose(got, want, rtol=0, atol=LOGIT_ATOL)
    # a batch smaller than the vocabulary takes the per-row path of the first layer
    np.testing.assert_allclose(fast.apply({"params": params}, x[:5]), want[:5], rtol=0,
                               atol=LOGIT_ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformer", "mlp"])
def test_training_with_shortcuts_matches_the_plain_computation(kind):
    """A few dozen AdamW steps (batch 64 > vocab 13, so the table path is taken) and the
    evaluations: metrics and final parameters agree to float32 rounding."""
    cfg = short_training_cfg(kind)
    ds = dataset_for(cfg)
    out = {}
    for sc in (False, True):
        c = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, shortcuts=sc))
        out[sc] = sweep.train_sweep(c, ds)
    assert_same_training(out[True], out[False])


def test_compute_settings_are_validated():
    with pytest.raises(ConfigError, match="compute_dtype"):
        ModelConfig(compute_dtype="float16").validate()
    with pytest.raises(ConfigError, match="matmul_precision"):
        ModelConfig(matmul_precision="tf32").validate()


def test_bfloat16_computation_keeps_float32_state_and_float32_logits():
    cfg = ModelConfig(kind="transformer", n_layers=1, d_model=16, n_heads=2,
                      compute_dtype="bfloat16")
    model = build_model(cfg, 9)
    x = _tokens(7, 32)
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))
    out = model.apply({"params": params}, x)
    assert out.dtype == jnp.float32
    ref = build_model(dataclasses.replace(cfg, compute_dtype="float32"), 9).apply(
        {"params": params}, x)
    # bfloat16 has an 8-bit mantissa: close, not equal
    assert 0 < float(jnp.abs(out - ref).max()) < 0.1


def _scatter_result_types(f, *args) -> list:
    """Element types of the scatters (e.g. a gather's gradient) in `f`'s lowered program."""
    text = jax.jit(f).lower(*args).as_text()
    return re.findall(r"stablehlo\.scatter.*?\) -> tensor<[0-9x]*x?([a-z0-9]+)>", text, re.S)


@pytest.mark.parametrize("name", ["power 2-layer post-LN", "embed", "onehot quadratic"])
def test_bfloat16_gathers_sum_their_gradients_in_float32(name):
    """In bfloat16 the shortcuts' gathers of vocabulary rows (and the embeddings') scatter-add
    their gradients in float32 (`linear.take_rows`): no scatter of the gradient is bfloat16."""
    cfg = {**TRANSFORMERS, **MLPS}[name]
    vocab, p = 25, 23
    x = _tokens(p, 64)  # more rows than vocabulary entries: the shortcuts gather
    y = jnp.asarray(np.random.default_rng(1).integers(0, vocab, 64), jnp.int32)
    model = build_model(dataclasses.replace(cfg, compute_dtype="bfloat16"), vocab)
    params = model.init(jax.random.PRNGKey(0), x)["params"]

    def loss(prm, x, y):
        logits = model.apply({"params": prm}, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    types = _scatter_result_types(jax.grad(loss), params, x, y)
    assert types and "bf16" not in types, types


def test_take_rows_gives_the_values_of_a_bfloat16_gather():
    t = jnp.asarray(np.random.default_rng(2).normal(size=(7, 3)), jnp.bfloat16)
    i = jnp.asarray([0, 6, 6, 2], jnp.int32)
    assert linear.take_rows(t, i).dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(linear.take_rows(t, i), np.float32),
                                  np.asarray(t[i], np.float32))


def test_a_small_configuration_still_groks_in_bfloat16():
    """tests/test_sweep.py's grokking configuration (one-hot quadratic MLP, addition mod 23,
    full batch, AdamW lr 3e-3, wd 1) with the model computed in bfloat16: at 60% data the
    training set is fit long before validation accuracy reaches 0.95, and it does reach it."""
    cfg = ExperimentConfig(
        task=TaskConfig(op="add", p=23),
        model=ModelConfig(kind="mlp", mlp_input="onehot", mlp_activation="quadratic",
                          mlp_width=128, mlp_depth=1, compute_dtype="bfloat16"),
        train=TrainConfig(steps=2500, batch_size="full", eval_every=25),
        sweep=SweepConfig(seeds=(0, 1), fractions=(0.6,), lrs=(3e-3,)))
    df, _ = sweep.train_sweep(cfg, dataset_for(cfg))
    for run, r in df.groupby("run"):
        r = r.sort_values("step")
        fit = r.step[r.train_acc >= 1.0].min()
        gen = r.step[r.val_acc >= 0.95].min()
        assert fit <= 300, (run, fit)
        assert gen >= 4 * fit, (run, fit, gen)
        assert r.val_acc.iloc[-1] >= 0.95, (run, r.val_acc.iloc[-1])


@pytest.mark.parametrize("setting,expected", [("highest", "HIGHEST"), ("high", "HIGH"),
                                              ("default", "DEFAULT")])
def test_matmul_precision_reaches_every_matmul_of_the_step(setting, expected):
    """`ModelConfig.matmul_precision` is applied while the step is traced: every dot_general
    of the loss and its gradient carries it (XLA:CPU computes float32 either way; GPUs and
    TPUs use it to choose TF32 / bf16 passes)."""
    cfg = ExperimentConfig(
        task=TaskConfig(op="add", p=7),
        model=ModelConfig(kind="transformer", n_layers=1, d_model=16, n_heads=2,
                          matmul_precision=setting),
        train=TrainConfig(steps=1, batch_size=16), sweep=SweepConfig(seeds=(0,)))
    problem = sweep.build_engine(cfg, dataset_for(cfg)).problem
    x = _tokens(7, 16)
    params = problem.model.init(jax.random.PRNGKey(0), x)["params"]

    def loss(p):
        return train.per_example_loss(train.model_output(problem, p, x), x[:, 0], "ce", 9).sum()

    jaxpr = jax.make_jaxpr(jax.jit(jax.grad(loss)))(params)
    dots = []

    def walk(jx):
        for eqn in jx.eqns:
            if eqn.primitive.name == "dot_general":
                dots.append(eqn.params["precision"])
            for v in eqn.params.values():
                for sub in (v if isinstance(v, (list, tuple)) else (v,)):
                    if hasattr(sub, "jaxpr"):
                        walk(sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub.jaxpr.jaxpr)
                    elif hasattr(sub, "eqns"):
                        walk(sub)

    walk(jaxpr.jaxpr)
    assert len(dots) >= 10
    for prec in dots:
        assert prec is not None and all(str(p).endswith(expected) for p in prec), prec


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_linear_matmul_and_its_gradient_match_lax_dot_general(dtype):
    """`linear.dot_general` on Dense's and DenseGeneral's contractions (one trailing axis; two,
    as in the attention's output projection), plain and under vmap: outputs, input and kernel
    gradients equal `lax.dot_general`'s to float rounding; other contractions are passed on."""
    r = np.random.default_rng(0)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == jnp.bfloat16 else dict(rtol=1e-5, atol=1e-5)
    cases = [((6, 5, 8), (8, 3), ((2,), (0,))),  # Dense on (..., K)
             ((6, 4, 2, 3), (2, 3, 7), ((2, 3), (0, 1))),  # DenseGeneral(axis=(-2, -1))
             ((6, 8), (8, 2, 3), ((1,), (0,)))]  # DenseGeneral(features=(h, d))
    for xs, ws, (lc, rc) in cases:
        x = jnp.asarray(r.normal(size=xs), dtype)
        w = jnp.asarray(r.normal(size=ws), dtype)
        dims = ((lc, rc), ((), ()))
        cot = jnp.asarray(r.normal(size=xs[:len(xs) - len(lc)] + ws[len(rc):]), dtype)

        def via(f):
            y, vjp = jax.vjp(lambda a, b: f(a, b, dims), x, w)
            return (y,) + vjp(cot)

        got, want = via(linear.dot_general), via(jax.lax.dot_general)
        for g, e in zip(got, want):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(e, np.float32),
                                       **tol)
    # vmapped over a leading axis of both (the engine's vmap layout)
    x = jnp.asarray(r.normal(size=(3, 5, 8)), dtype)
    w = jnp.asarray(r.normal(size=(3, 8, 4)), dtype)

    def loss(f):
        return lambda a, b: jnp.sum(jnp.sin(jax.vmap(f)(a, b).astype(jnp.float32)))

    for g, e in zip(jax.grad(loss(linear.matmul), (0, 1))(x, w),
                    jax.grad(loss(lambda a, b: a @ b), (0, 1))(x, w)):
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(e, np.float32), **tol)
    # the kernel gradient's two forms (narrow kernels take the second on CPU, the first
    # elsewhere) agree, and the rule sends the read-out-like shapes to the second
    x, g = jnp.asarray(r.normal(size=(9, 6)), dtype), jnp.asarray(r.normal(size=(9, 2)), dtype)
    for p in (None, jax.lax.Precision.HIGHEST):
        np.testing.assert_allclose(
            np.asarray(linear._kernel_grad_from_g_transposed(x, g, p), np.float32),
            np.asarray(linear._kernel_grad(x, g, p), np.float32), **tol)
    assert linear._is_narrow(256, 25) and linear._is_narrow(512, 128)
    assert not (linear._is_narrow(256, 256) or linear._is_narrow(784, 200)
                or linear._is_narrow(25, 256))
    # a contraction that is not a dense layer's goes to lax.dot_general unchanged
    a, b = jnp.ones((4, 3), dtype), jnp.ones((4, 5), dtype)
    dims = (((0,), (0,)), ((), ()))
    assert (jax.make_jaxpr(lambda a, b: linear.dot_general(a, b, dims))(a, b).eqns[0]
            .primitive.name == "dot_general")
