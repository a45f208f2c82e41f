"""Omnigrok-style MNIST machinery on tiny synthetic data: alpha scaling at init, the
constant-norm control, loss/output variants (with a finite-difference gradient check), vmapped
sweeps with a fixed validation set equal to runs done one at a time, the data helpers, and the
CLIs' one-line errors."""

import dataclasses
import gzip
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest

from jgrok import rundir, sweep, train
from jgrok.config import ExperimentConfig, ModelConfig, OptimConfig, SweepConfig, TrainConfig
from jgrok.data.omnigrok import mnist_dataset, separable_dataset
from jgrok.presets import omnigrok_eval_steps, omnigrok_preset, study_variant
from jgrok.data.split import Dataset
from jgrok.errors import ConfigError
from jgrok.models.mlp import DenseMLP
from jgrok.optim import make_optimizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = list(train.METRIC_NAMES)


def _tiny_dataset(n_train=48, n_val=32, dim=12, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_train + n_val, dim)).astype(np.float32)
    w = rng.standard_normal((dim, n_classes))
    y = np.argmax(x @ w, axis=1).astype(np.int32)
    val = np.zeros(n_train + n_val, bool)
    val[n_train:] = True
    return Dataset("tiny", x, y, n_classes, n_classes, val_rows=val)


def _tiny_cfg(steps=20, **model_kw):
    return ExperimentConfig(
        model=ModelConfig(kind="dense", mlp_width=16, mlp_depth=2, **model_kw),
        optim=OptimConfig(b2=0.999, warmup_steps=0),
        train=TrainConfig(steps=steps, batch_size=16, loss="mse", eval_every=10,
                          checkpoint_every=steps),
        sweep=SweepConfig(seeds=(0, 1), fractions=(1.0,), weight_decays=(0.1,), lrs=(1e-2,),
                          init_scales=(1.0, 3.0)))


def _problem(model, loss="mse", n_classes=4, output_activation="none", constant_norm=False):
    tx = make_optimizer(OptimConfig(warmup_steps=0), 10)
    return train.Problem(model=model, tx=tx, loss=loss, n_classes=n_classes, max_batch=8,
                         eval_rows=8, constant_norm=constant_norm,
                         output_activation=output_activation)


class _BiasedMLP(nn.Module):
    """Like DenseMLP but with non-zero initial biases, so the bias scaling is visible."""

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.normal(0.5)
        h = nn.relu(nn.Dense(8, bias_init=init, name="hidden_0")(x))
        return nn.Dense(4, bias_init=init, name="unembed")(h)


@pytest.mark.parametrize("model", [DenseMLP(n_out=4, width=8), _BiasedMLP()])
def test_alpha_scales_every_parameter_and_the_norm_exactly(model):
    prob = _problem(model)
    sample = jnp.zeros((1, 12), jnp.float32)

    def init(alpha):
        return train.init_run(prob, sample, jnp.uint32(3), jnp.uint32(0), jnp.float32(1e-3),
                              jnp.float32(0.1), jnp.float32(alpha)).params

    p1, p7 = init(1.0), init(7.0)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p7)):
        np.testing.assert_allclose(np.asarray(b), 7.0 * np.asarray(a), rtol=1e-6, atol=0)
    np.testing.assert_allclose(float(optax.tree.norm(p7)), 7.0 * float(optax.tree.norm(p1)),
                               rtol=1e-6)
    if isinstance(model, _BiasedMLP):  # biases really are non-zero and scaled
        b1 = np.asarray(p1["hidden_0"]["bias"])
        assert np.abs(b1).sum() > 0
        np.testing.assert_allclose(np.asarray(p7["hidden_0"]["bias"]), 7 * b1, rtol=1e-6)


def test_constant_norm_keeps_the_initial_global_norm():
    ds = _tiny_dataset()
    cfg = _tiny_cfg(steps=30)
    cn = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, constant_norm=True))
    df_cn, _ = sweep.train_sweep(cn, ds)
    for run, g in df_cn.groupby("run"):
        g = g.sort_values("step")
        np.testing.assert_allclose(g.param_norm, g.param_norm.iloc[0], rtol=2e-5)
        assert g.train_loss.iloc[-1] != g.train_loss.iloc[0]  # it does train
    # the rescaling itself: a tree scaled away from its reference norm is brought back
    ref = {"a": jnp.ones((3,)), "b": {"c": 2 * jnp.ones((2, 2))}}
    moved = jax.tree.map(lambda p: 0.3 * p + 0.1, ref)
    back = train.rescale_to_norm(moved, ref)
    np.testing.assert_allclose(float(optax.tree.norm(back)), float(optax.tree.norm(ref)),
                               rtol=1e-6)
    # initial norms: alpha=3 runs are exactly 3x the alpha=1 runs of the same seed
    init = df_cn[df_cn.step == 0].set_index(["seed", "init_scale"]).param_norm
    for s in (0, 1):
        np.testing.assert_allclose(init[(s, 3.0)], 3 * init[(s, 1.0)], rtol=1e-6)


@pytest.mark.parametrize("loss,output,act", [("mse", "none", "relu"), ("mse", "sigmoid", "relu"),
                                             ("mse", "softmax", "relu"),
                                             ("mse", "none", "sigmoid"), ("ce", "none", "relu")])
def test_variants_have_right_shapes_and_finite_gradients(loss, output, act):
    model = DenseMLP(n_out=4, width=8, activation=act)
    prob = _problem(model, loss=loss, output_activation=output)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 12))
    y = jnp.array([0, 1, 2, 3, 0, 1], jnp.int32)
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    params = jax.tree.map(lambda p: 7.0 * p, params)
    out = train.model_output(prob, params, x)
    assert out.shape == (6, 4)
    if output == "sigmoid":
        assert bool(jnp.all((out >= 0) & (out <= 1)))
    if output == "softmax":
        np.testing.assert_allclose(np.asarray(out.sum(-1)), 1.0, rtol=1e-5)
    per = train.per_example_loss(out, y, loss, 4)
    assert per.shape == (6,)
    g = jax.grad(lambda p: train.per_example_loss(train.model_output(prob, p, x), y, loss,
                                                  4).mean())(params)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))
    assert float(optax.tree.norm(g)) > 0


def test_mse_sigmoid_output_gradient_matches_finite_differences():
    model = DenseMLP(n_out=4, width=8, activation="relu")
    prob = _problem(model, loss="mse", output_activation="sigmoid")
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(0), (5, 12), jnp.float64)
        y = jnp.array([0, 1, 2, 3, 1], jnp.int32)
        params = model.init(jax.random.PRNGKey(1), x)["params"]
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64) * 1.5
                              + 0.05 * (p == 0), params)  # non-zero biases too

        def loss(p):
            return train.per_example_loss(train.model_output(prob, p, x), y, "mse", 4).mean()

        loss = jax.jit(loss)
        grads = jax.grad(loss)(params)
        leaves, treedef = jax.tree.flatten(params)
        gleaves = jax.tree.leaves(grads)
        rng = np.random.default_rng(0)
        eps = 1e-6
        for li in (0, len(leaves) - 1, len(leaves) - 2):  # a bias, the read-out kernel/bias
            for _ in range(3):
                idx = tuple(int(rng.integers(0, d)) for d in leaves[li].shape)
                plus = [l.at[idx].add(eps) if i == li else l for i, l in enumerate(leaves)]
                minus = [l.at[idx].add(-eps) if i == li else l for i, l in enumerate(leaves)]
                fd = (loss(jax.tree.unflatten(treedef, plus))
                      - loss(jax.tree.unflatten(treedef, minus))) / (2 * eps)
                np.testing.assert_allclose(float(gleaves[li][idx]), float(fd), rtol=1e-5,
                                           atol=1e-10)


def test_vmapped_sweep_with_val_rows_equals_runs_one_at_a_time(tmp_path):
    ds = _tiny_dataset()
    cfg = _tiny_cfg(steps=20)
    df = rundir.run_variants({"v": cfg}, ds, tmp_path, eval_steps=[0, 5, 10, 20],
                             log=lambda m: None)
    assert set(df.step) == {0, 5, 10, 20} and (df.variant == "v").all()
    assert df.run.nunique() == 4
    n_val = int(ds.val_rows.sum())
    assert df[df.step == 20].train_loss.nunique() == 4
    for i, g in enumerate(cfg.sweep.grid()):
        one_cfg = dataclasses.replace(cfg, sweep=SweepConfig(
            seeds=(g["seed"],), fractions=(1.0,), weight_decays=(g["weight_decay"],),
            lrs=(g["lr"],), init_scales=(g["init_scale"],)))
        one, _ = sweep.train_sweep(one_cfg, ds)
        a = df[(df.run == i) & df.step.isin([0, 10, 20])].sort_values("step")
        b = one.sort_values("step")
        np.testing.assert_allclose(a[METRICS].to_numpy(), b[METRICS].to_numpy(), rtol=2e-5,
                                   atol=1e-6)
    # validation accuracy is measured on the fixed val rows: a multiple of 1/n_val
    v = df.val_acc.to_numpy() * n_val
    np.testing.assert_allclose(v, np.round(v), atol=1e-3)


def _write_idx(path, arr, magic):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_dataset_on_tiny_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 25)):
        imgs = rng.integers(0, 256, (n, 28, 28))
        labels = np.arange(n) % 10
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", imgs, 2051)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels, 2049)
    ds = mnist_dataset(str(tmp_path), n_train=30)
    assert ds.inputs.shape == (55, 784) and ds.n_classes == 10
    assert int(ds.val_rows.sum()) == 25 and not ds.val_rows[:30].any()
    np.testing.assert_array_equal(ds.targets[:30], np.arange(30) % 10)
    two = mnist_dataset(str(tmp_path), n_train=6, classes=(0, 1))
    assert two.n_classes == 2 and set(two.targets.tolist()) == {0, 1}
    assert int(two.val_rows.sum()) == 6  # test labels 0,1,10,11,20,21 -> six 0/1 digits
    with pytest.raises(ConfigError):
        mnist_dataset(str(tmp_path), classes=(3,))
    with pytest.raises(ConfigError):
        mnist_dataset(str(tmp_path / "missing"))


def test_separable_dataset_and_preset():
    ds = separable_dataset(n=100, dim=5, seed=1, margin=1.0, n_val=50)
    assert ds.inputs.shape == (150, 5) and ds.n_classes == 2 and int(ds.val_rows.sum()) == 50
    # linearly separable with the margin: some unit w puts every class on its side by >= 0.5
    x, y = ds.inputs.astype(np.float64), ds.targets
    w = np.linalg.lstsq(x, np.where(y == 1, 1.0, -1.0), rcond=None)[0]
    assert np.mean((x @ w > 0) == (y == 1)) == 1.0
    np.testing.assert_array_equal(separable_dataset(100, 5, 1, 1.0, 50).inputs, ds.inputs)
    with pytest.raises(ConfigError):
        separable_dataset(n=0)
    cfg = omnigrok_preset(10_000)
    assert (cfg.optim.b1, cfg.optim.b2, cfg.optim.eps, cfg.optim.warmup_steps) == (
        0.9, 0.999, 1e-8, 0)
    assert (cfg.train.batch_size, cfg.train.loss, cfg.sweep.init_scales,
            cfg.sweep.weight_decays, cfg.sweep.lrs) == (256, "mse", (7.0,), (0.1,), (1e-3,))
    assert (cfg.model.mlp_width, cfg.model.mlp_depth, cfg.model.output_activation) == (
        200, 2, "none")
    assert omnigrok_eval_steps(10_000)[:4] == (0, 1, 2, 4)
    assert omnigrok_eval_steps(10_000)[-2:] == (8192, 10_000)
    assert omnigrok_preset(1024).train.eval_steps() == omnigrok_eval_steps(1024)


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [
    ("omnigrok_mnist.py", ["--data_dir={missing}"]),
    ("mnist_variants.py", ["--data_dir={missing}", "--parts=mnist"]),
    ("mnist_variants.py", ["--wine_dir={missing}", "--parts=wine"]),
])
def test_cli_missing_data_dir_exits_2_with_one_line(tmp_path, script, args):
    missing = str(tmp_path / "nope")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script),
                           *[a.format(missing=missing) for a in args],
                           f"--out={tmp_path / 'out'}"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope" in lines[0]
    assert not (tmp_path / "out").exists()


def test_torch_init_matches_nn_linear_bounds_and_omnigrok_norm():
    """weight_init='torch': weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as torch's nn.Linear;
    the 784-200-200-10 model's expected global norm is sqrt(sum_l n_l / (3 fan_in_l)) = 11.71
    (Omnigrok's alpha = 1), against 20.3 for Flax's default init."""
    model = DenseMLP(n_out=10, width=200, depth=2, weight_init="torch")
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 784)))["params"]
    fan_in = {"hidden_0": 784, "hidden_1": 200, "unembed": 200}
    expected_sq = 0.0
    for name, layer in params.items():
        bound = 1 / np.sqrt(fan_in[name])
        for leaf in (layer["kernel"], layer["bias"]):
            a = np.asarray(leaf)
            assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
            expected_sq += a.size * bound**2 / 3
    norm = float(np.sqrt(sum(np.sum(np.square(np.asarray(x))) for x in jax.tree.leaves(params))))
    assert abs(np.sqrt(expected_sq) - 11.71) < 0.01
    assert abs(norm - np.sqrt(expected_sq)) < 0.02 * norm
    assert omnigrok_preset().model.weight_init == "torch"
    with pytest.raises(ConfigError, match="implemented for the dense model only"):
        ModelConfig(kind="mlp", weight_init="torch").validate()


class _Killed(Exception):
    pass


def test_variants_resume_exactly_and_number_runs_across_variants(tmp_path):
    """A sweep of named variants killed in its second variant resumes from that variant's
    checkpoint; the final table equals an uninterrupted one, runs numbered across variants."""
    ds = _tiny_dataset()
    base = _tiny_cfg(steps=20)
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, checkpoint_every=5))
    variants = {"mse": base, "ce": study_variant(base, "cross_entropy")}
    quiet = dict(eval_steps=[0, 1, 2, 4, 8, 16], log=lambda m: None)
    full = rundir.run_variants(variants, ds, tmp_path / "full", **quiet)

    def kill_ce_at_16(step, state, m):
        if step == 16 and len(m["train_acc"]) and kill_ce_at_16.variant == "ce":
            raise _Killed()

    kill_ce_at_16.variant = None
    with pytest.raises(_Killed):
        for name in variants:  # run them one by one to kill inside the second
            kill_ce_at_16.variant = name
            rundir.run_variants({name: variants[name]}, ds, tmp_path / "cut",
                                on_eval=kill_ce_at_16, **quiet)
    resumed = rundir.run_variants(variants, ds, tmp_path / "cut", resume=True, **quiet)
    pd.testing.assert_frame_equal(full, resumed, check_exact=True)
    assert list(full.variant.unique()) == ["mse", "ce"]
    assert sorted(full.run.unique()) == list(range(8))
    assert (full[full.variant == "ce"].run >= 4).all()
    on_disk = pd.read_csv(tmp_path / "cut" / "metrics.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "metrics.csv"), on_disk)
    with pytest.raises(ConfigError, match="evaluation steps differ"):
        rundir.run_variants(variants, ds, tmp_path / "cut", resume=True, eval_steps=[0, 20],
                            log=lambda m: None)
