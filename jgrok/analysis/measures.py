"""Progress measures of trained runs on modular addition (Nanda et al. 2023; Gromov 2023).

:func:`progress_measures` computes, for ONE run, from its parameters alone:

``full_train_loss``, ``full_test_loss``
    Cross-entropy of the model's logits over the ``p`` answer classes only (the two extra
    tokens, op and ``=``, are dropped as in Nanda et al.'s code), on the run's training pairs and
    on the other pairs. (The sweep's ``train_loss``/``val_loss`` use the whole vocabulary.)
``restricted_loss``
    Cross-entropy, over ALL ``p^2`` pairs, of the logits projected onto the key-frequency
    directions ``cos/sin(w_k (x + y - c))`` (:func:`jgrok.analysis.progress.restricted_loss`).
    It falls when the Fourier circuit alone predicts the answer.
``excluded_loss``
    Cross-entropy, on the run's TRAINING pairs, of the logits with those directions removed
    (:func:`jgrok.analysis.progress.excluded_loss`). It rises when the training fit comes to
    rely on the circuit rather than on memorisation.
``gini_embed``, ``gini_unembed``
    Gini coefficient of the per-frequency Fourier norms (frequencies ``1..p//2``; the constant
    is left out) of the embedding rows of the ``p`` operand tokens and of the unembedding
    columns of the ``p`` answer tokens. It rises as the weights concentrate on few frequencies.
``sum_sq_weights``
    Sum of squares of all parameters.
``key_mask``
    The boolean mask ``(p//2 + 1,)`` of the ``n_keys`` key frequencies used above.

Key frequencies (``key_source``):

* ``"embed"`` (default): the ``n_keys`` non-constant frequencies with the largest Fourier norm
  of the embedding ``W_E[:p]`` (for the one-hot MLP: the ``x`` half of the first-layer weights).
  Cheap, and after grokking it agrees with the neuron-based choice; early in training it picks
  whichever frequencies happen to be largest, so restricted/excluded losses of an untrained
  model are those of arbitrary frequencies.
* ``"neurons"``: the ``n_keys`` frequencies explaining most variance of the MLP neurons (the
  last block's ReLU outputs at the ``=`` position, or the MLP's first hidden layer) over the
  ``p x p`` grid (:func:`jgrok.analysis.progress.key_frequencies_from_neurons`).
* a fixed ``freq_mask``: e.g. the key frequencies of the FINAL model applied to every
  checkpoint, which is what Nanda et al. plot. ``experiments/progress_measures.py`` reports both.

:func:`sweep_progress_measures` is the ``jit(vmap(...))`` over all runs of a sweep engine,
returning one row per run. :func:`gromov_ipr` / :func:`sweep_gromov_ipr` give Gromov's inverse
participation ratio of each hidden neuron's first-layer weights (``x`` and ``y`` halves).
"""

from __future__ import annotations

import math
import os

import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jgrok import train
from jgrok.analysis import progress as pm
from jgrok.errors import ConfigError

__all__ = ["MEASURE_COLUMNS", "KEY_SOURCES", "operand_embedding", "answer_unembedding",
           "progress_measures", "sweep_progress_measures", "key_freqs_string",
           "gromov_first_layer", "gromov_ipr", "sweep_gromov_ipr"]

MEASURE_COLUMNS = ("full_train_loss", "full_test_loss", "restricted_loss", "excluded_loss",
                   "gini_embed", "gini_unembed", "sum_sq_weights")
KEY_SOURCES = ("embed", "neurons")


# --------------------------------------------------------------------------------------------
# weights of the operand tokens
# --------------------------------------------------------------------------------------------


def operand_embedding(params, p: int) -> jnp.ndarray:
    """``(p, d)``: the input representation of the ``p`` operand tokens -- the transformer's (or
    embedding MLP's) token embedding, or the ``x`` half of a one-hot MLP's first layer."""
    if "embed" in params:
        return params["embed"]["embedding"][:p]
    if "hidden_0" in params:
        return params["hidden_0"]["kernel"][:p]
    raise ConfigError("progress measures need a model with an 'embed' or 'hidden_0' layer")


def answer_unembedding(params, p: int) -> jnp.ndarray:
    """``(d, p)``: the read-out columns of the ``p`` answer tokens."""
    if "unembed" not in params:
        raise ConfigError("progress measures need a model with an 'unembed' layer")
    return params["unembed"]["kernel"][:, :p]


# --------------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------------


def _neuron_layer(problem: train.Problem, params) -> tuple[str, ...]:
    """Module path whose ``__call__`` output holds the (pre-activation) neurons."""
    if "hidden_0" in params:
        return ("hidden_0",)
    blocks = sorted(k for k in params if k.startswith("block_"))
    if blocks:
        return (blocks[-1], "ffn_in")
    raise ConfigError("key_source='neurons' needs a transformer or an operand MLP")


def _activation(problem: train.Problem):
    from jgrok.models.mlp import ACTIVATIONS

    return ACTIVATIONS.get(getattr(problem.model, "activation", "relu"), jax.nn.relu)


def _output(problem: train.Problem, out):
    if problem.output_activation == "sigmoid":
        return jax.nn.sigmoid(out)
    if problem.output_activation == "softmax":
        return jax.nn.softmax(out, axis=-1)
    return out


def _forward(problem: train.Problem, params, inputs, with_neurons: bool):
    """Logits (N, vocab) and, with ``with_neurons``, post-activation neurons (N, n_neurons),
    computed in chunks of ``problem.eval_rows`` rows."""
    n = inputs.shape[0]
    c = min(problem.eval_rows, n)
    pad = (-n) % c
    xs = jnp.concatenate([inputs, jnp.zeros((pad,) + inputs.shape[1:], inputs.dtype)])
    xs = xs.reshape((-1, c) + inputs.shape[1:])
    path = _neuron_layer(problem, params) if with_neurons else None

    def chunk(xc):
        if not with_neurons:
            return train.model_output(problem, params, xc)
        out, inter = problem.model.apply(
            {"params": params}, xc, mutable=["intermediates"],
            capture_intermediates=lambda mdl, name: (name == "__call__"
                                                     and mdl.path == path))
        node = inter["intermediates"]
        for k in path:
            node = node[k]
        h = node["__call__"][0]
        if h.ndim == 3:  # transformer: (c, T, d_ff), the '=' position
            h = h[:, -1, :]
        return _output(problem, out), _activation(problem)(h)

    def flat(a):
        return a.reshape((-1,) + a.shape[2:])[:n]

    if not with_neurons:
        return flat(jax.lax.map(chunk, xs)), None
    logits, neurons = jax.lax.map(chunk, xs)
    return flat(logits), flat(neurons)


def progress_measures(problem: train.Problem, params, inputs, labels, train_mask, p: int,
                      n_keys: int = 5, key_source: str = "embed",
                      freq_mask: Optional[jnp.ndarray] = None) -> dict:
    """The progress measures of one run (definitions in the module docstring). Pure, jittable.

    ``inputs`` (p*p, 4) are the equations in row-major order (``x`` outer, ``y`` inner),
    ``labels`` (p*p,) their answers (in ``[0, p)``), ``train_mask`` (p*p,) the run's training
    pairs; ``p``, ``n_keys`` and ``key_source`` are static. A given ``freq_mask`` (``(p//2+1,)``
    bool) overrides the key-frequency choice. Returns a dict of scalars plus ``key_mask``.
    """
    if key_source not in KEY_SOURCES:
        raise ConfigError(f"unknown key_source {key_source!r}; known: {', '.join(KEY_SOURCES)}")
    if inputs.shape[0] != p * p:
        raise ConfigError(f"progress measures need all {p * p} pairs of Z_{p}, got "
                          f"{inputs.shape[0]} rows")
    with_neurons = key_source == "neurons" and freq_mask is None
    logits, neurons = _forward(problem, params, inputs, with_neurons)
    logits = logits.reshape(p, p, -1)[..., :p]
    labels = jnp.asarray(labels).reshape(p, p)
    tm = jnp.asarray(train_mask).reshape(p, p)

    emb_norms = pm.embedding_fourier_norms(operand_embedding(params, p))
    unemb_norms = pm.unembedding_fourier_norms(answer_unembedding(params, p))
    if freq_mask is not None:
        mask = jnp.asarray(freq_mask, bool)
    elif with_neurons:
        mask = pm.key_frequencies_from_neurons(neurons.reshape(p, p, -1), n_keys)
    else:
        mask = pm.key_frequency_mask(emb_norms, n_keys)
    return dict(
        full_train_loss=pm.cross_entropy_on_pairs(logits, labels, tm),
        full_test_loss=pm.cross_entropy_on_pairs(logits, labels, ~tm),
        restricted_loss=pm.restricted_loss(logits, labels, mask, None),
        excluded_loss=pm.excluded_loss(logits, labels, mask, tm),
        gini_embed=pm.gini(emb_norms[1:]),
        gini_unembed=pm.gini(unemb_norms[1:]),
        sum_sq_weights=pm.sum_squared_weights(params),
        key_mask=mask,
    )


# --------------------------------------------------------------------------------------------
# all runs of a sweep
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _batched_measures(problem: train.Problem, p: int, n_keys: int, key_source: str,
                      fixed_mask: bool):
    def one(params, inputs, labels, train_mask, mask):
        return progress_measures(problem, params, inputs, labels, train_mask, p, n_keys,
                                 key_source, mask if fixed_mask else None)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, 0, 0 if fixed_mask else None)))


def _check_engine(engine) -> int:
    cfg = engine.cfg
    if cfg.task.op != "add":
        raise ConfigError(f"progress measures are defined for op 'add' (x + y - c structure), "
                          f"not {cfg.task.op!r}")
    p = int(cfg.task.p)
    if engine.dataset.size != p * p:
        raise ConfigError(f"dataset has {engine.dataset.size} rows, expected p^2 = {p * p}")
    return p


def key_freqs_string(mask) -> str:
    """``"14 35 41"``: the frequencies set in a boolean frequency mask."""
    return " ".join(str(int(k)) for k in np.flatnonzero(np.asarray(mask)))


def sweep_progress_measures(engine, state, n_keys: int = 5, key_source: str = "embed",
                            freq_masks=None, params=None) -> pd.DataFrame:
    """Progress measures of every real run of a sweep, one row per run.

    Columns: ``run``, ``step`` (from ``state.step``), :data:`MEASURE_COLUMNS` and ``key_freqs``
    (a string like ``"14 35 41"``), ready to merge into the tidy metrics table on
    ``(run, step)``. ``freq_masks`` (n_runs or n_padded, p//2+1) fixes each run's key
    frequencies; ``params`` (batched like ``state.params``) replaces the state's parameters
    (e.g. a stored earlier checkpoint; `state` may then be None, and ``step`` is -1). Training
    pairs are each run's ``train_mask``; labels
    are the clean answers.
    """
    p = _check_engine(engine)
    if key_source not in KEY_SOURCES:
        raise ConfigError(f"unknown key_source {key_source!r}; known: {', '.join(KEY_SOURCES)}")
    fixed = freq_masks is not None
    fn = _batched_measures(engine.problem, p, int(n_keys), key_source, fixed)
    mask_arg = None
    if fixed:
        m = np.asarray(freq_masks, bool)
        if m.ndim != 2 or m.shape[1] != p // 2 + 1 or m.shape[0] < engine.n_runs:
            raise ConfigError(f"freq_masks must have shape (n_runs, {p // 2 + 1}), "
                              f"got {m.shape}")
        if m.shape[0] < engine.n_padded:
            m = np.concatenate([m, np.repeat(m[-1:], engine.n_padded - m.shape[0], 0)])
        mask_arg = engine.shard_runs(jnp.asarray(m))
    out = fn(state.params if params is None else params, engine.inputs, engine.targets,
             engine.run_data.train_mask, mask_arg)
    out = jax.device_get(out)
    steps = (np.asarray(jax.device_get(state.step)) if state is not None
             else np.full(engine.n_padded, -1))
    rows = []
    for i in range(engine.n_runs):
        row = dict(run=i, step=int(steps[i]))
        for k in MEASURE_COLUMNS:
            row[k] = float(out[k][i])
        row["key_freqs"] = key_freqs_string(out["key_mask"][i])
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Gromov's inverse participation ratio
# --------------------------------------------------------------------------------------------


def gromov_first_layer(params, p: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The ``x`` and ``y`` halves ``(p, width)`` of a one-hot operand MLP's first layer.

    The input is ``[onehot_V(x), onehot_V(y)]`` with ``V = p + 2`` (whole vocabulary), so the
    kernel is ``(2V, width)``: rows ``0..p-1`` weigh ``x``, rows ``V..V+p-1`` weigh ``y``."""
    if "hidden_0" not in params:
        raise ConfigError("Gromov IPR needs an operand MLP (a 'hidden_0' layer)")
    w = params["hidden_0"]["kernel"]
    v = w.shape[0] // 2
    return w[:p], w[v:v + p]


def _dominant_frequency(w: jnp.ndarray) -> jnp.ndarray:
    """Per column of ``w`` (p, n): the non-constant frequency with the most Fourier power."""
    p = w.shape[0]
    coef = pm.fourier_basis(p, w.dtype) @ w
    rows = jnp.asarray(pm.frequency_of_row(p))
    power = jax.ops.segment_sum(coef ** 2, rows, num_segments=pm.n_frequencies(p))
    return jnp.argmax(power[1:], axis=0) + 1


def gromov_ipr(params, p: int, r: int = 2) -> dict:
    """Per hidden neuron: IPR of the Fourier spectrum of its ``x`` and ``y`` input weights
    (:func:`jgrok.analysis.progress.inverse_participation_ratio`; 1 = one frequency,
    ``1/(p//2)`` = flat) and the dominant frequency of each half. Pure, jittable."""
    wx, wy = gromov_first_layer(params, p)
    return dict(ipr_x=pm.inverse_participation_ratio(wx, axis=0, r=r),
                ipr_y=pm.inverse_participation_ratio(wy, axis=0, r=r),
                freq_x=_dominant_frequency(wx), freq_y=_dominant_frequency(wy))


@functools.lru_cache(maxsize=8)
def _batched_ipr(p: int, r: int):
    return jax.jit(jax.vmap(lambda params: gromov_ipr(params, p, r)))


def sweep_gromov_ipr(engine, state, r: int = 2, params=None) -> pd.DataFrame:
    """Gromov IPR of every neuron of every real run: one row per (run, neuron) with columns
    ``run, step, neuron, ipr_x, ipr_y, freq_x, freq_y``."""
    p = int(engine.cfg.task.p)
    out = jax.device_get(_batched_ipr(p, int(r))(state.params if params is None else params))
    steps = (np.asarray(jax.device_get(state.step)) if state is not None
             else np.full(engine.n_padded, -1))
    frames = []
    for i in range(engine.n_runs):
        n = out["ipr_x"].shape[1]
        frames.append(pd.DataFrame(dict(run=i, step=int(steps[i]), neuron=np.arange(n),
                                        ipr_x=out["ipr_x"][i], ipr_y=out["ipr_y"][i],
                                        freq_x=out["freq_x"][i], freq_y=out["freq_y"][i])))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Nanda et al.'s phases of one run (memorization, circuit formation, clean-up)

#: train accuracy that ends memorization, margin over the commutation share that starts the
#: clean-up, test accuracy that ends it
MEM_ACC, CLEAN_MARGIN, GROK_ACC = 0.99, 0.05, 0.99


def _first(steps, values, thresh, after=-1):
    ok = np.flatnonzero((np.asarray(values) >= thresh) & (np.asarray(steps) >= after))
    return float(steps[ok[0]]) if ok.size else float("nan")


def commutation_share(train_mask, p):
    """Fraction of test pairs (x, y) whose swapped pair (y, x) is a training pair."""
    tm = np.asarray(train_mask, bool).reshape(p, p)
    return float((tm.T & ~tm).sum() / max((~tm).sum(), 1))


def phase_boundaries(df, shares, p: Optional[int] = None):
    """One row per run: memorized, cleanup_start, grokked (rules in the module docstring);
    ``shares[run]`` is the run's commutation share. With the modulus ``p`` also
    ``test_loss_below_chance``: the first evaluation after ``memorized`` at which the test loss
    (``full_test_loss``) is at or below ln p again."""
    rows = []
    for run, g in df.groupby("run"):
        g = g.sort_values("step")
        s = g.step.to_numpy()
        mem = _first(s, g.train_acc.to_numpy(), MEM_ACC)
        clean = (_first(s, g.val_acc.to_numpy(), shares[run] + CLEAN_MARGIN, after=mem)
                 if not math.isnan(mem) else float("nan"))
        row = dict(run=run, seed=int(g.seed.iloc[0]), commutation_share=shares[run],
                   memorized=mem, cleanup_start=clean,
                   grokked=_first(s, g.val_acc.to_numpy(), GROK_ACC))
        if p is not None:  # the test loss back below chance, ln p, after its memorization peak
            row["test_loss_below_chance"] = (
                float("nan") if math.isnan(mem) else
                _first(s, -g.full_test_loss.to_numpy(), -math.log(p), after=mem))
        rows.append(row)
    return pd.DataFrame(rows)


def key_frequency_markdown(final: pd.DataFrame, phases: pd.DataFrame, df: pd.DataFrame) -> str:
    """Markdown table: per run its final key frequencies (``final``: one row per run with
    ``final_key_freqs``, the threshold rule's, where `with_final_key_losses` added them, else
    the last evaluation's top ``key_freqs``), its :func:`phase_boundaries` and its final test
    accuracy."""
    by_rule = "final_key_freqs" in final.columns
    lines = [f"| seed | run | key frequencies (final embedding, "
             f"{'threshold rule' if by_rule else 'top n_keys'}) | memorized | clean-up start | "
             "grokked | final test acc |", "|---|---|---|---|---|---|---|"]
    for _, r in final.iterrows():
        ph = phases[phases.run == r.run].iloc[0]
        last = df[(df.run == r.run)].sort_values("step").iloc[-1]
        keys = r.final_key_freqs if by_rule else r.key_freqs
        lines.append(f"| {int(last.seed)} | {int(r.run)} | {keys} | {ph.memorized:g} | "
                     f"{ph.cleanup_start:g} | {ph.grokked:g} | {last.val_acc:.3f} |")
    return "\n".join(lines) + "\n"


#: Nanda et al. (2023), mainline run (p = 113, 30% of the pairs, 40k full-batch steps), as the
#: paper reports it: the phase boundaries (memorization 0-1.4k, circuit formation 1.4k-9.4k,
#: clean-up 9.4k-13.3k epochs), its five key frequencies, and "after around 10,000 epochs,
#: the network generalizes".
NANDA_PAPER = dict(memorization_end=1_400, cleanup_start=9_400, cleanup_end=13_300,
                   key_freqs=(14, 35, 41, 42, 52), generalizes_near=10_000)


def _step(v) -> str:
    return "not reached" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.0f}"


def paper_comparison_markdown(phases: pd.DataFrame, df: pd.DataFrame) -> str:
    """Markdown table: :data:`NANDA_PAPER` beside each run's phases (``phases``: rows of
    :func:`phase_boundaries` with ``p``), its final key frequencies (``final_key_freqs``) and
    its final losses (the last evaluation of ``df``)."""
    paper = NANDA_PAPER
    head = ["", "memorization ends (train acc 99%)", "clean-up starts (test acc > "
            "commutation share + 5%)", "test loss back below chance (ln p)",
            "clean-up ends (test acc 99%)", "key frequencies (count)", "final train loss",
            "final test loss"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
             f"| Nanda et al. | ~{_step(paper['memorization_end'])} | "
             f"~{_step(paper['cleanup_start'])} | (generalizes after ~"
             f"{_step(paper['generalizes_near'])}) | ~{_step(paper['cleanup_end'])} | "
             f"{' '.join(map(str, paper['key_freqs']))} ({len(paper['key_freqs'])}) | "
             f"(figure only) | (figure only) |"]
    for _, ph in phases.sort_values("run").iterrows():
        last = df[df.run == ph.run].sort_values("step").iloc[-1]
        keys = str(last.get("final_key_freqs", last.key_freqs)).split()
        lines.append(
            f"| jgrok seed {int(ph.seed)} | {_step(ph.memorized)} | {_step(ph.cleanup_start)} | "
            f"{_step(ph.get('test_loss_below_chance'))} | {_step(ph.grokked)} | "
            f"{' '.join(keys)} ({len(keys)}) | {last.full_train_loss:.2e} | "
            f"{last.full_test_loss:.2e} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Nanda et al.'s convention: each run's FINAL key frequencies applied to every evaluation

def save_params(params, path) -> None:
    """Write a batch of parameters (a pytree) to ``path`` as an .npz of its leaves, atomically."""
    from jgrok.tables import atomic_write

    leaves = [np.asarray(a) for a in jax.tree.leaves(jax.device_get(params))]

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, *leaves)

    atomic_write(path, write)


def load_params(path, like):
    """The parameters written by :func:`save_params`, in the tree structure of ``like``."""
    with np.load(path) as z:
        return jax.tree.unflatten(jax.tree.structure(like),
                                  [z[f"arr_{i}"] for i in range(len(z.files))])


def final_key_masks(engine, params, threshold: float = 3.0) -> np.ndarray:
    """``(n_runs, p//2 + 1)`` bool: each run's key frequencies in the weights ``params``
    (batched like the state's), by the threshold rule of
    :func:`jgrok.analysis.progress.key_frequencies`: every non-constant frequency whose share
    of the operand embedding's squared Fourier norm exceeds ``threshold`` times the mean
    share. How many there are follows from the weights, as in Nanda et al.'s Figure 3a."""
    p = _check_engine(engine)
    norms = jax.device_get(jax.vmap(lambda w: pm.embedding_fourier_norms(
        operand_embedding(w, p)))(params))
    masks = np.zeros((engine.n_runs, p // 2 + 1), bool)
    for i in range(engine.n_runs):
        masks[i, pm.key_frequencies(norms[i], threshold=threshold)] = True
    return masks


def masks_from_strings(key_freqs, p: int) -> np.ndarray:
    """Masks ``(len(key_freqs), p//2 + 1)`` from strings like ``"14 35 41"``."""
    masks = np.zeros((len(key_freqs), p // 2 + 1), bool)
    for i, ks in enumerate(key_freqs):
        masks[i, [int(k) for k in str(ks).split()]] = True
    return masks


#: the columns :func:`with_final_key_losses` adds (and replaces when they are there)
FINAL_KEY_COLUMNS = ("restricted_loss_final_keys", "excluded_loss_final_keys", "final_key_freqs")


def with_final_key_losses(engine, df: pd.DataFrame, snapshot_dir, n_keys: int,
                          masks: Optional[np.ndarray] = None) -> pd.DataFrame:
    """``df`` (a metrics table with the per-evaluation ``key_freqs``) plus
    ``restricted_loss_final_keys``, ``excluded_loss_final_keys`` and ``final_key_freqs``: the
    restricted and excluded loss of the weights of every evaluation (read from
    ``<snapshot_dir>/<step>.npz``, written by :func:`save_params`) with each run's final key
    frequencies: ``masks`` (``(n_runs, p//2 + 1)``, e.g. :func:`final_key_masks`), or the
    ``key_freqs`` of the last evaluation. The full train and test losses are recomputed in the
    same pass, so that a table written before the measures' losses were exact gets exact
    ones."""
    p = _check_engine(engine)
    df = df.drop(columns=[c for c in FINAL_KEY_COLUMNS if c in df.columns])
    final = df[df.step == df.step.max()].sort_values("run")
    if masks is None:
        masks = masks_from_strings(final.key_freqs.astype(str), p)
    like = jax.tree.map(np.asarray, sweep_state_params(engine))
    fixed = []
    for step in sorted(df.step.unique()):
        params = load_params(os.path.join(snapshot_dir, f"{int(step)}.npz"), like)
        f = sweep_progress_measures(engine, None, n_keys, freq_masks=masks,
                                    params=engine.shard_runs(params))
        fixed.append(f.assign(step=int(step))[["run", "step", "restricted_loss",
                                               "excluded_loss", "full_train_loss",
                                               "full_test_loss"]])
    fixed = pd.concat(fixed).rename(columns=dict(
        restricted_loss="restricted_loss_final_keys", excluded_loss="excluded_loss_final_keys"))
    fixed["final_key_freqs"] = [key_freqs_string(masks[r]) for r in fixed.run]
    out = df.drop(columns=["full_train_loss", "full_test_loss"]).merge(fixed, on=["run", "step"])
    return out[list(df.columns) + list(FINAL_KEY_COLUMNS)]


def sweep_state_params(engine):
    """The engine's initial parameters (batched): the tree structure snapshots load into."""
    from jgrok import sweep

    return sweep.init_state(engine).params


def ipr_summary(ipr: pd.DataFrame) -> str:
    """One line on a table of :func:`sweep_gromov_ipr` rows marked ``when`` = initial / final:
    median IPR, the share of neurons with IPR > 0.5, and of neurons whose x and y weights have
    the same dominant frequency."""
    f, i = ipr[ipr.when == "final"], ipr[ipr.when == "initial"]
    return (f"median IPR initial x {i.ipr_x.median():.3f} y {i.ipr_y.median():.3f}; final x "
            f"{f.ipr_x.median():.3f} y {f.ipr_y.median():.3f}; final neurons with IPR>0.5 "
            f"(x,y): {(f.ipr_x > 0.5).mean():.2f}, {(f.ipr_y > 0.5).mean():.2f}; same dominant "
            f"frequency in x and y: {(f.freq_x == f.freq_y).mean():.2f} (initial "
            f"{(i.freq_x == i.freq_y).mean():.2f})")
