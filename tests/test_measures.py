"""Progress measures on hand-built weights, vmapped measures equal one-by-one, the per-step
slingshot logger equals `sweep.advance`, and the presets are what they say."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jgrok import presets, slingshot, sweep, train
from jgrok.analysis import measures as M
from jgrok.analysis import progress as pm
from jgrok.data.algorithmic import make_task
from jgrok.data.split import dataset_from_task
from jgrok.errors import ConfigError

P = 11


class _LogitTable:
    """A stand-in model whose output for [x, op, y, =] is row x*p+y of a fixed table."""

    def __init__(self, table):
        self.table = jnp.asarray(table)

    def apply(self, variables, tokens):
        p = int(round(self.table.shape[0] ** 0.5))
        return self.table[tokens[..., 0] * p + tokens[..., 2]]


def _problem(model, vocab):
    return train.Problem(model=model, tx=None, loss="ce", n_classes=vocab, max_batch=1,
                         eval_rows=64)


def _fourier_params(p, freqs, d=8, rng=0):
    """Params whose embedding lives on `freqs` and an unembedding with random columns."""
    r = np.random.default_rng(rng)
    x = np.arange(p)
    cols = []
    for k in freqs:
        cols += [np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)]
    emb = np.zeros((p + 2, d), np.float32)
    emb[:p, :len(cols)] = np.stack(cols, 1)
    return {"embed": {"embedding": jnp.asarray(emb)},
            "unembed": {"kernel": jnp.asarray(r.normal(size=(d, p + 2)), jnp.float32)}}


def _inputs(p):
    return jnp.asarray(dataset_from_task(make_task("add", p)).inputs)


def test_logits_made_of_key_frequencies_have_restricted_equal_full_loss():
    p, keys = P, (2, 5)
    x = np.arange(p)
    # logits[x, y, c] = 4 * sum_k cos(w_k (x + y - c)): exactly key-frequency terms
    arg = x[:, None, None] + x[None, :, None] - x[None, None, :]
    logits = sum(4.0 * np.cos(2 * np.pi * k * arg / p) for k in keys)
    table = np.concatenate([logits.reshape(p * p, p), np.full((p * p, 2), -50.0)], -1)
    params = _fourier_params(p, keys)
    labels = (x[:, None] + x[None, :]).reshape(-1) % p
    train_mask = np.random.default_rng(1).random(p * p) < 0.3
    out = M.progress_measures(_problem(_LogitTable(table), p + 2), params, _inputs(p),
                              jnp.asarray(labels), jnp.asarray(train_mask), p, n_keys=2)
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(out["key_mask"])), keys)
    full = pm.cross_entropy_on_pairs(jnp.asarray(logits), jnp.asarray(labels.reshape(p, p)))
    np.testing.assert_allclose(out["restricted_loss"], full, rtol=1e-5)
    # only the key directions carry signal: with them removed the logits are constant
    np.testing.assert_allclose(out["excluded_loss"], np.log(p), rtol=1e-5)
    np.testing.assert_allclose(
        out["full_train_loss"],
        pm.cross_entropy_on_pairs(jnp.asarray(logits), jnp.asarray(labels.reshape(p, p)),
                                  jnp.asarray(train_mask.reshape(p, p))), rtol=1e-6)
    # embedding norms equal on 2 of the n = 5 frequencies, 0 elsewhere: Gini = (n - 2) / n
    n = p // 2
    np.testing.assert_allclose(out["gini_embed"], (n - 2) / n, atol=1e-5)
    ssw = sum(float(np.sum(np.square(v))) for v in jax.tree.leaves(params))
    np.testing.assert_allclose(out["sum_sq_weights"], ssw, rtol=1e-6)


def test_fixed_frequency_mask_is_used_and_key_freq_string():
    p = P
    table = np.random.default_rng(0).normal(size=(p * p, p + 2)).astype(np.float32)
    params = _fourier_params(p, (3,))
    labels = jnp.asarray((np.arange(p)[:, None] + np.arange(p)[None, :]).reshape(-1) % p)
    mask = np.zeros(p // 2 + 1, bool)
    mask[[1, 4]] = True
    out = M.progress_measures(_problem(_LogitTable(table), p + 2), params, _inputs(p), labels,
                              jnp.ones(p * p, bool), p, n_keys=1, freq_mask=jnp.asarray(mask))
    assert M.key_freqs_string(out["key_mask"]) == "1 4"
    want = pm.restricted_loss(jnp.asarray(table[:, :p].reshape(p, p, p)),
                              labels.reshape(p, p), jnp.asarray(mask))
    np.testing.assert_allclose(out["restricted_loss"], want, rtol=1e-6)


@pytest.fixture(scope="module")
def tiny_engine():
    cfg = presets.nanda_preset(steps=12, p=P, seeds=(0, 1, 2), d_model=16, d_ff=32,
                               n_heads=2, eval_every=6)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, warmup_steps=2),
                              sweep=dataclasses.replace(cfg.sweep, lrs=(1e-2,)))
    return sweep.build_engine(cfg, dataset_from_task(make_task("add", P)))


@pytest.mark.slow
@pytest.mark.parametrize("key_source", ["embed", "neurons"])
def test_vmapped_measures_equal_one_by_one(tiny_engine, key_source):
    eng = tiny_engine
    state = sweep.advance(eng, sweep.init_state(eng), 8)
    df = M.sweep_progress_measures(eng, state, n_keys=2, key_source=key_source)
    assert list(df.run) == [0, 1, 2] and set(df.step) == {8}
    one_run = jax.jit(functools.partial(M.progress_measures, eng.problem),
                      static_argnums=(4, 5, 6))
    for i in range(3):
        params = jax.tree.map(lambda a: a[i], state.params)
        one = one_run(params, eng.inputs, eng.targets, eng.run_data.train_mask[i], P, 2,
                      key_source)
        for k in M.MEASURE_COLUMNS:
            np.testing.assert_allclose(df[k][i], float(one[k]), rtol=2e-5, atol=1e-6)
        assert df.key_freqs[i] == M.key_freqs_string(one["key_mask"])
        assert len(df.key_freqs[i].split()) == 2
    # the full losses over p classes are close to the sweep's (whole-vocabulary) losses
    m = sweep.evaluate(eng, state)
    assert np.all(df.full_train_loss.to_numpy() <= m["train_loss"] + 1e-5)


def test_neuron_key_source_matches_direct_activations(tiny_engine):
    eng = tiny_engine
    state = sweep.init_state(eng)
    params = jax.tree.map(lambda a: a[0], state.params)
    _, inter = eng.problem.model.apply({"params": params}, eng.inputs, mutable=["intermediates"],
                                       capture_intermediates=True)
    acts = jax.nn.relu(inter["intermediates"]["block_0"]["ffn_in"]["__call__"][0][:, -1])
    want = pm.key_frequencies_from_neurons(acts.reshape(P, P, -1), 3)
    got = M.progress_measures(eng.problem, params, eng.inputs, eng.targets,
                              eng.run_data.train_mask[0], P, 3, "neurons")["key_mask"]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_measures_refuse_other_ops():
    cfg = presets.nanda_preset(steps=2, p=7, op="mul", d_model=8, d_ff=8, n_heads=2)
    eng = sweep.build_engine(cfg, dataset_from_task(make_task("mul", 7)))
    with pytest.raises(ConfigError, match="op 'add'"):
        M.sweep_progress_measures(eng, None)  # refused before any computation


def test_gromov_ipr_of_single_frequency_neurons():
    p, width = P, 5
    x = np.arange(p)
    v = p + 2
    w = np.zeros((2 * v, width), np.float32)
    for n in range(width):
        k = n + 1
        w[:p, n] = np.cos(2 * np.pi * k * x / p + 0.3 * n)
        w[v:v + p, n] = np.sin(2 * np.pi * k * x / p)
    out = M.gromov_ipr({"hidden_0": {"kernel": jnp.asarray(w)}}, p)
    np.testing.assert_allclose(out["ipr_x"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["ipr_y"], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out["freq_x"], np.arange(1, width + 1))
    np.testing.assert_array_equal(out["freq_y"], np.arange(1, width + 1))


def test_gromov_preset_and_sweep_ipr():
    cfg = presets.gromov_preset(steps=4, p=P, seeds=(0, 1), width=12)
    assert cfg.model.mlp_activation == "quadratic" and cfg.model.mlp_depth == 1
    assert cfg.train.loss == "mse" and cfg.sweep.weight_decays == (0.0,)
    assert presets.gromov_preset(variant="adamw").optim.name == "adamw"
    with pytest.raises(ConfigError):
        presets.gromov_preset(variant="sgd-ish")
    eng = sweep.build_engine(cfg, dataset_from_task(make_task("add", P)))
    df = M.sweep_gromov_ipr(eng, sweep.init_state(eng))
    assert len(df) == 2 * 12
    assert ((df.ipr_x > 0) & (df.ipr_x <= 1) & (df.ipr_y > 0) & (df.ipr_y <= 1)).all()


def test_nanda_preset_is_the_paper_setup():
    cfg = presets.nanda_preset()
    cfg.validate()
    m, o, t = cfg.model, cfg.optim, cfg.train
    assert (cfg.task.op, cfg.task.p, cfg.sweep.fractions) == ("add", 113, (0.3,))
    assert (m.n_layers, m.d_model, m.n_heads, m.d_ff) == (1, 128, 4, 512)
    assert not m.layer_norm and m.positions == "learned"
    assert (o.name, o.b1, o.b2, cfg.sweep.lrs, cfg.sweep.weight_decays) == (
        "adamw", 0.9, 0.98, (1e-3,), (1.0,))
    assert t.batch_size == "full"


@functools.lru_cache(maxsize=2)
def _batched_train_step(problem):
    return jax.jit(jax.vmap(functools.partial(train.train_step, problem), in_axes=(None, 0, 0)))


@pytest.mark.parametrize("float64_loss", [False, True])
def test_scan_logger_matches_advance_and_train_step(tiny_engine, float64_loss):
    eng, n = tiny_engine, 7
    ref = sweep.advance(eng, sweep.init_state(eng), n)
    got, losses, norms = slingshot.advance_logged(eng, sweep.init_state(eng), n,
                                                  float64_loss=float64_loss)
    assert losses.shape == norms.shape == (3, n)
    tol = dict(rtol=1e-4, atol=1e-6) if float64_loss else dict(rtol=2e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)
    np.testing.assert_allclose(norms[:, -1], sweep.evaluate(eng, ref)["last_layer_norm"],
                               **tol)
    # the recorded losses are train_step's, step by step
    step = _batched_train_step(eng.problem)
    s = sweep.init_state(eng)
    want_l, want_n = [], []
    for _ in range(n):
        s, loss = step(eng.inputs, s, eng.run_data)
        want_l.append(np.asarray(loss))
        want_n.append(np.asarray(jax.vmap(train.last_layer_norm)(s.params)))
    np.testing.assert_allclose(losses, np.stack(want_l, 1), **tol)
    np.testing.assert_allclose(norms, np.stack(want_n, 1), **tol)


def test_commutation_share_counts_swapped_training_pairs():
    p = 3
    train_pairs = {(0, 1), (1, 2), (2, 2)}
    mask = np.array([[(x, y) in train_pairs for y in range(p)] for x in range(p)]).ravel()
    # test pairs: 6; of them (1, 0) and (2, 1) have their swap in training
    assert M.commutation_share(mask, p) == pytest.approx(2 / 6)
    assert M.commutation_share(np.zeros(p * p, bool), p) == 0.0


def test_phase_boundaries_follow_the_written_rules():
    steps = [0, 10, 20, 30, 40]
    df = pd.DataFrame(dict(
        run=[0] * 5 + [1] * 5, seed=[0] * 5 + [1] * 5, step=steps * 2,
        train_acc=[0.1, 0.995, 1, 1, 1] + [0.1, 0.5, 0.6, 0.7, 0.8],
        val_acc=[0.0, 0.30, 0.36, 0.8, 0.995] + [0.0] * 5))
    ph = M.phase_boundaries(df, {0: 0.30, 1: 0.30}).set_index("run")
    # memorized at the first train acc >= 0.99; clean-up when val > share + 0.05 after it
    assert (ph.loc[0, "memorized"], ph.loc[0, "cleanup_start"], ph.loc[0, "grokked"]) == (
        10.0, 20.0, 40.0)
    assert np.isnan(ph.loc[1, ["memorized", "cleanup_start", "grokked"]].astype(float)).all()


def test_final_key_masks_find_the_frequencies_the_embedding_lives_on(tiny_engine):
    eng = tiny_engine
    per_run = [(2,), (1, 4), (3, 5)]
    emb = np.stack([np.asarray(_fourier_params(P, ks, d=16)["embed"]["embedding"])
                    for ks in per_run + per_run[:1] * (eng.n_padded - 3)])
    rng = np.random.default_rng(0)
    emb[:, :P] += 0.01 * rng.normal(size=emb[:, :P].shape)  # noise on every frequency
    # p = 11 has 5 frequencies: two keys hold half the norm each, above 2x the mean share
    masks = M.final_key_masks(eng, {"embed": {"embedding": jnp.asarray(emb)}}, threshold=2.0)
    assert masks.shape == (3, P // 2 + 1)
    assert [M.key_freqs_string(m) for m in masks] == ["2", "1 4", "3 5"]


def test_phase_boundaries_find_the_test_loss_back_below_chance():
    p = 5  # chance: ln 5 = 1.61
    df = pd.DataFrame(dict(
        run=[0] * 5, seed=[0] * 5, step=[0, 10, 20, 30, 40],
        train_acc=[0.2, 1, 1, 1, 1], val_acc=[0.2, 0.2, 0.3, 0.9, 1.0],
        full_test_loss=[1.5, 9.0, 3.0, 1.2, 0.01]))  # below ln 5 at 0, then again at 30
    ph = M.phase_boundaries(df, {0: 0.0}, p).iloc[0]
    assert ph.memorized == 10 and ph.test_loss_below_chance == 30
    assert "test_loss_below_chance" not in M.phase_boundaries(df, {0: 0.0}).columns


def _nanda_table():
    steps = [0, 100, 200, 300]
    rows = []
    for run, keys in ((0, "14 35 41 42 52"), (1, "14 35")):
        for i, s in enumerate(steps):
            rows.append(dict(run=run, seed=run, step=s, train_acc=[0.1, 1, 1, 1][i],
                             val_acc=[0.0, 0.3, 0.5, 1.0][i], full_train_loss=10.0 ** -i,
                             full_test_loss=[4.7, 20, 3, 1e-3][i], key_freqs=keys,
                             final_key_freqs=keys, restricted_loss_final_keys=1.0,
                             excluded_loss_final_keys=2.0, gini_embed=0.1 * i,
                             gini_unembed=0.2 * i, sum_sq_weights=100.0 - i))
    return pd.DataFrame(rows)


def test_paper_comparison_puts_each_seed_beside_the_published_numbers():
    df = _nanda_table()
    ph = M.phase_boundaries(df, {0: 0.3, 1: 0.3}, 113)
    md = M.paper_comparison_markdown(ph, df).splitlines()
    assert len(md) == 5 and md[2].startswith("| Nanda et al. | ~1,400 | ~9,400 |")
    assert "14 35 41 42 52 (5)" in md[2]
    # seed 0: memorized 100, clean-up start 200 (0.5 > 0.35), back below ln 113 at 200,
    # grokked 300; final losses from the last evaluation
    assert md[3] == ("| jgrok seed 0 | 100 | 200 | 200 | 300 | 14 35 41 42 52 (5) | "
                     "1.00e-03 | 1.00e-03 |")
    assert md[4].split(" | ")[5] == "14 35 (2)"


def test_nanda_phases_figure_draws_every_seed_and_shades_the_median_phases():
    from jgrok.figures.progress import nanda_phases_figure

    df = _nanda_table()
    ph = M.phase_boundaries(df, {0: 0.3, 1: 0.3}, 113)
    ph.loc[1, ["memorized", "cleanup_start", "grokked"]] = [200.0, 300.0, float("nan")]
    fig = nanda_phases_figure(df, ph)
    axes = [a for a in fig.axes if a.get_title(loc="left")]
    assert len(axes) == 6
    curves = [2, 2, 2, 2, 1, 2]  # per panel, each drawn once per seed
    assert [len(a.lines) for a in axes] == [2 * c for c in curves]
    assert axes[0].get_yscale() == "log" and axes[4].get_yscale() == "linear"
    np.testing.assert_allclose(axes[4].lines[1].get_ydata(), [100, 99, 98, 97])
    # medians over the seeds: memorized (100, 200) -> 150, clean-up start (200, 300) -> 250,
    # grokked (300, nan) -> 300
    xs = sorted((p.get_x(), p.get_x() + p.get_width()) for p in axes[0].patches)
    assert xs == [(0.0, 150.0), (150.0, 250.0), (250.0, 300.0)]


def test_key_frequency_table_gives_the_threshold_rule_keys_where_the_final_pass_added_them():
    df = pd.DataFrame(dict(run=[0, 0, 1, 1], seed=[0, 0, 1, 1], step=[0, 100, 0, 100],
                           val_acc=[0.01, 0.998, 0.02, 1.0],
                           key_freqs=["1 2 3", "4 5 6", "7 8 9", "10 11 12"]))
    phases = pd.DataFrame(dict(run=[0, 1], memorized=[100.0, 100.0],
                               cleanup_start=[100.0, np.nan], grokked=[100.0, np.nan]))
    last = df[df.step == 100]
    top = M.key_frequency_markdown(last, phases, df)
    assert "top n_keys" in top and "| 0 | 0 | 4 5 6 | 100 |" in top and "| 0.998 |" in top
    ruled = M.key_frequency_markdown(last.assign(final_key_freqs=["4 5 6 20", "11"]),
                                     phases, df)
    assert "threshold rule" in ruled
    assert "| 0 | 0 | 4 5 6 20 | 100 | 100 | 100 | 0.998 |" in ruled
    assert "| 1 | 1 | 11 | 100 | nan | nan | 1.000 |" in ruled
