"""Named, ready-made configurations: the one place where presets live.

:func:`get` returns a preset by name (:data:`PRESETS`); ``--preset=NAME`` on any entry point
starts from it, and every flag given on the command line overrides it.

* ``power`` -- Power et al. (2022): the 2-layer transformer, p = 97, AdamW lr 1e-3, wd 1,
  1e5 steps, fractions 0.1 ... 0.9. The default of ``phase_diagram.py`` and ``op_survey.py``.
* ``thesis`` -- the replication thesis (the course's reference notes, outside this
  repository): openai/grok's defaults with weight decay 0.01 and a budget of 2e6 steps (log-spaced evaluations).
* ``cpu_grok`` -- :func:`cpu_grok_preset`, a phase diagram with a grokking band that a 2-core
  CPU trains in minutes.
* ``nanda``, ``gromov`` -- the two papers below, whose grokking mechanism is understood;
  ``nanda_cpu``, ``gromov_cpu`` -- the same at a CPU size (``experiments/progress_measures.py``).
* ``slingshot`` -- :func:`slingshot_preset` (``experiments/slingshot.py``).
* ``omnigrok_script``, ``omnigrok_notebook`` -- :func:`omnigrok_preset`'s two set-ups
  (``experiments/omnigrok_mnist.py``, ``experiments/mnist_variants.py``).

Every entry point takes ``--preset=NAME`` (each starts from its own preset when none is given).

The MNIST / Wine Quality presets (``experiments/omnigrok_mnist.py``,
``experiments/mnist_variants.py``): :func:`omnigrok_preset` (Omnigrok's MNIST script, or its
notebook's set-up: :data:`OMNIGROK_SETUPS`) and :func:`study_variant` (the output-layer and
loss variants of the course study, :data:`STUDY_VARIANTS`).

* :func:`nanda_preset` -- Nanda et al. (2023), "Progress measures for grokking via mechanistic
  interpretability": a 1-layer ReLU transformer without LayerNorm learns ``(x + y) mod 113``
  from 30% of the pairs with full-batch AdamW (lr 1e-3, weight decay 1, betas (0.9, 0.98)).
* :func:`gromov_preset` -- Gromov (2023), "Grokking modular arithmetic": a two-layer MLP
  (one hidden layer, quadratic activation) on the concatenated one-hot codes of ``x`` and ``y``,
  trained on the MSE against one-hot answers, with no explicit regularisation (or an AdamW
  variant).

Both return a plain :class:`jgrok.config.ExperimentConfig`; every argument can be overridden,
and ``dataclasses.replace`` changes anything else. Known differences from the papers (the
package's model classes are shared with the other experiments and are not specialised):

* Initialisation is Flax's default (LeCun-normal kernels, N(0, 1/d) embeddings), not the
  papers', except ``nanda_preset``'s (``weight_init="nanda"``).
* ``nanda_preset``: no biases anywhere (Nanda's MLP has ``b_in``/``b_out``, initialised to 0);
  the vocabulary is ``p + 2`` tokens (an operator token besides ``=``); the input is
  ``[x, op, y, =]``.
* ``gromov_preset``: the operand MLP has biases; the read-out is over the ``p + 2`` tokens, and
  the MSE averages over those ``p + 2`` outputs (the two unused targets are 0).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from jgrok.config import (FULL_BATCH, ExperimentConfig, ModelConfig, OptimConfig, SweepConfig,
                          TaskConfig, TrainConfig)
from jgrok.errors import ConfigError

__all__ = ["nanda_preset", "gromov_preset", "power_preset", "thesis_preset", "cpu_grok_preset",
           "omnigrok_preset", "omnigrok_eval_steps", "slingshot_preset", "study_variant",
           "GROMOV_VARIANTS", "OMNIGROK_SETUPS", "STUDY_VARIANTS", "PRESETS", "get"]

#: Power et al.'s nine training fractions 0.1, 0.2, ..., 0.9
PAPER_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def power_preset() -> ExperimentConfig:
    """Power et al. (2022): the configuration dataclasses' defaults (2-layer post-LayerNorm
    transformer, d_model 128, 4 heads, p = 97, AdamW lr 1e-3, betas (0.9, 0.98), weight decay 1,
    10 warm-up steps, batch min(512, N_train / 2), 1e5 steps) over fractions 0.1 ... 0.9."""
    return ExperimentConfig(sweep=SweepConfig(fractions=PAPER_FRACTIONS))


def thesis_preset() -> ExperimentConfig:
    """The replication thesis: openai/grok's defaults (the paper's transformer and optimizer,
    batch 512, p = 97) with weight decay 0.01, which the thesis names its most crucial setting,
    and its largest budget, 2e6 steps. Evaluations are log-spaced (400 points), checkpoints every
    5e4 steps. Only a GPU or TPU trains this in reasonable time (BUILD.md gives a projection)."""
    return ExperimentConfig(
        train=TrainConfig(steps=2_000_000, log_eval=400, checkpoint_every=50_000),
        sweep=SweepConfig(fractions=PAPER_FRACTIONS, weight_decays=(0.01,)))



def nanda_preset(steps: int = 40_000, p: int = 113, seeds: Sequence[int] = (0, 1, 2),
                 fraction: float = 0.3, lr: float = 1e-3, weight_decay: float = 1.0,
                 d_model: int = 128, d_ff: int = 512, n_heads: int = 4,
                 eval_every: int = 100, op: str = "add", weight_init: str = "nanda",
                 loss_precision: str = "high", checkpoint_every: int = 1_000
                 ) -> ExperimentConfig:
    """Nanda et al.'s modular-addition setup.

    Defaults are the paper's: ``p = 113`` (a prime, so every non-zero frequency is a
    generator), 30% of the ``p^2`` pairs for training, a 1-layer transformer with
    ``d_model = 128``, 4 heads of 32 dimensions, ReLU MLP of width ``d_mlp = 512``, no LayerNorm,
    learned positions; full-batch AdamW with lr ``1e-3`` (10-step linear warm-up, as their
    ``LambdaLR(min(step / 10, 1))``), weight decay ``1.0`` and betas ``(0.9, 0.98)``; 40 000
    steps (their "epochs", one full batch each); their initialization (``weight_init="nanda"``)
    and a cross-entropy as exact as their float64 one (``loss_precision="high"``); three seeds.
    The paper's grokking happens between ~1.4k steps (memorisation) and ~13k steps (clean-up).
    A checkpoint, and the metrics table, every ``checkpoint_every`` steps.
    """
    if steps < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    return ExperimentConfig(
        task=TaskConfig(op=op, p=p),
        model=ModelConfig(kind="transformer", n_layers=1, d_model=d_model, n_heads=n_heads,
                          d_ff=d_ff, use_bias=False, max_len=4, layer_norm=False,
                          positions="learned", weight_init=weight_init),
        optim=OptimConfig(name="adamw", b1=0.9, b2=0.98, eps=1e-8, warmup_steps=10,
                          schedule="constant"),
        train=TrainConfig(steps=steps, batch_size=FULL_BATCH, loss="ce",
                          loss_precision=loss_precision, eval_every=eval_every,
                          checkpoint_every=min(checkpoint_every, steps)),
        sweep=SweepConfig(seeds=tuple(int(s) for s in seeds), fractions=(float(fraction),),
                          weight_decays=(float(weight_decay),), lrs=(float(lr),)))


#: variant -> (optimizer name, weight decay)
GROMOV_VARIANTS = {"noreg": ("adam", 0.0), "adamw": ("adamw", 1.0)}


def gromov_preset(steps: int = 5_000, p: int = 97, seeds: Sequence[int] = (0,),
                  fraction: float = 0.5, width: int = 512, lr: float = 1e-3,
                  variant: str = "noreg", weight_decay: float | None = None,
                  eval_every: int = 50, op: str = "add") -> ExperimentConfig:
    """Gromov's quadratic MLP on modular arithmetic.

    ``f(x, y) = W2 phi(W1 [onehot(x), onehot(y)])`` with ``phi(z) = z^2`` and one hidden layer of
    ``width`` units, MSE loss against one-hot answers, full batch.

    * ``p = 97``: Gromov's modulus; the data set (9 409 pairs) and the one-hot input layer
      (2 x 99 rows) are small, so a full run takes a few minutes on a CPU.
    * ``width = 512``: Gromov's analytic solution is a sum over neurons, each a single
      frequency with its own phases, whose error shrinks as the width grows; widths of a few
      hundred (several times ``p``) are in the range of his experiments.
    * ``fraction = 0.5``: the training fraction used in most of his figures.
    * ``lr = 1e-3`` (Adam): with the quadratic activation the outputs are degree-3 polynomials
      of the weights; larger Adam steps tend to blow up early. Our choice, not the paper's.
    * ``variant="noreg"``: Adam without weight decay -- the paper's point that grokking needs no
      explicit regularisation. ``variant="adamw"``: decoupled weight decay 1.0 (override with
      ``weight_decay``).
    """
    if variant not in GROMOV_VARIANTS:
        raise ConfigError(f"unknown Gromov variant {variant!r}; known: "
                          f"{', '.join(GROMOV_VARIANTS)}")
    if steps < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    name, wd = GROMOV_VARIANTS[variant]
    if weight_decay is not None:
        wd = float(weight_decay)
    return ExperimentConfig(
        task=TaskConfig(op=op, p=p),
        model=ModelConfig(kind="mlp", mlp_width=width, mlp_depth=1, mlp_activation="quadratic",
                          mlp_input="onehot"),
        optim=OptimConfig(name=name, b1=0.9, b2=0.98, eps=1e-8, warmup_steps=10),
        train=TrainConfig(steps=steps, batch_size=FULL_BATCH, loss="mse",
                          eval_every=eval_every, checkpoint_every=max(steps, 1)),
        sweep=SweepConfig(seeds=tuple(int(s) for s in seeds), fractions=(float(fraction),),
                          weight_decays=(wd,), lrs=(float(lr),)))



def cpu_grok_preset(op: str = "x2_plus_y2", p: int = 47, alphas: Sequence[float] = (1.0, 10.0),
                    steps: int = 2_200, seeds: Sequence[int] = (0, 1, 2, 3),
                    fractions: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
                    ) -> ExperimentConfig:
    """A phase diagram with a grokking band that a 2-core CPU trains in about 20 minutes.

    An MLP on learned operand embeddings (Liu et al.'s and Omnigrok's algorithmic model):
    ``x`` and ``y`` are embedded (64 dimensions each), concatenated, one ReLU layer of 256 units,
    a linear read-out; full-batch AdamW (lr 1e-2, betas (0.9, 0.98), weight decay 0.1, 10
    warm-up steps), cross-entropy, p = 47. The grid is training fraction x init scale ``alpha``
    (every initial parameter multiplied by it, Omnigrok's knob) x 4 seeds. At ``alpha = 10`` the
    network memorizes at a large weight norm and validation accuracy stays flat while weight
    decay shrinks the norm (about ``ln(alpha) / (lr * wd)`` steps), then jumps; at ``alpha = 1``
    it generalizes with the fit where the training fraction is large. A high learning rate with
    a low weight decay keeps ``lr * wd`` (the plateau) while fitting faster, which is what puts
    the jump beyond 10x the fit step. The search that chose these numbers is in
    ``results/x2_plus_y2_cpu/README.md``.
    """
    if steps < 1:
        raise ConfigError(f"steps={steps} must be >= 1")
    return ExperimentConfig(
        task=TaskConfig(op=op, p=p),
        model=ModelConfig(kind="mlp", d_model=64, mlp_width=256, mlp_depth=1,
                          mlp_activation="relu", mlp_input="embed"),
        optim=OptimConfig(name="adamw", b1=0.9, b2=0.98, eps=1e-8, warmup_steps=10),
        train=TrainConfig(steps=steps, batch_size=FULL_BATCH, loss="ce", log_eval=80,
                          checkpoint_every=1_000),
        sweep=SweepConfig(seeds=tuple(int(s) for s in seeds),
                          fractions=tuple(float(f) for f in fractions),
                          weight_decays=(0.1,), lrs=(1e-2,),
                          init_scales=tuple(float(a) for a in alphas)))

#: Omnigrok's two MNIST set-ups: their script (scripts/train-mnist-mlp.py) and their notebook
#: (weight decay 0.01, batch 200, alpha 8); name -> (weight decay, batch size, alpha)
OMNIGROK_SETUPS = {"script": (0.1, 256, 7.0), "notebook": (0.01, 200, 8.0)}


def omnigrok_eval_steps(steps: int) -> tuple[int, ...]:
    """Omnigrok's logging schedule: step 0 and every power of two below ``steps``, plus the
    last step (which their script never logs)."""
    pts = {0, int(steps)}
    k = 1
    while k < steps:
        pts.add(k)
        k *= 2
    return tuple(sorted(pts))


def omnigrok_preset(steps: int = 10_000, weight_init: str = "torch",
                    setup: str = "script") -> ExperimentConfig:
    """Omnigrok's MNIST experiment (Liu, Michaud & Tegmark 2022): 784-200-200-10 ReLU MLP
    (three Linear layers), every parameter times alpha, MSE against one-hot outputs (linear
    read-out), torch AdamW defaults (betas 0.9/0.999, eps 1e-8, no warm-up, constant lr 1e-3),
    on the first 1000 training images (fraction 1.0 of
    :func:`jgrok.data.omnigrok.mnist_dataset`'s pool). ``setup``: ``"script"`` (weight decay
    0.1, batch 256, alpha 7) or ``"notebook"`` (0.01, 200, alpha 8), :data:`OMNIGROK_SETUPS`.
    Evaluation: ``log_eval`` log-spaced points, exactly the powers of two when ``steps`` is a
    power of two (the entry points pass :func:`omnigrok_eval_steps` to evaluate at powers of two
    for any ``steps``). ``weight_init="torch"`` (default) initializes the layers as torch's
    ``nn.Linear`` does, as the script does before multiplying by alpha (initial global norm 11.7
    at alpha 1); ``"default"`` is Flax's init (norm 20.3, sqrt(3) larger)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps={steps!r} must be a positive integer")
    if setup not in OMNIGROK_SETUPS:
        raise ConfigError(f"unknown Omnigrok set-up {setup!r}; known: "
                          f"{', '.join(OMNIGROK_SETUPS)}")
    weight_decay, batch, alpha = OMNIGROK_SETUPS[setup]
    return ExperimentConfig(
        task=TaskConfig(),
        model=ModelConfig(kind="dense", mlp_width=200, mlp_depth=2, mlp_activation="relu",
                          output_activation="none", weight_init=weight_init),
        optim=OptimConfig(name="adamw", b1=0.9, b2=0.999, eps=1e-8, warmup_steps=0,
                          schedule="constant", constant_norm=False),
        train=TrainConfig(steps=steps, batch_size=batch, loss="mse",
                          log_eval=int(math.floor(math.log2(steps))) + 1,
                          checkpoint_every=steps),
        sweep=SweepConfig(seeds=(0,), fractions=(1.0,), weight_decays=(weight_decay,),
                          lrs=(1e-3,), init_scales=(alpha,)))


#: the course study's output-layer and loss variants of Omnigrok's set-up:
#: name -> (loss, hidden activation, output activation)
STUDY_VARIANTS = {
    "baseline": ("mse", "relu", "none"),
    "sigmoid_hidden": ("mse", "sigmoid", "none"),
    "sigmoid_output": ("mse", "relu", "sigmoid"),
    "softmax_output": ("mse", "relu", "softmax"),
    "cross_entropy": ("ce", "relu", "none"),
}


def study_variant(base: ExperimentConfig, name: str) -> ExperimentConfig:
    """``base`` (an :func:`omnigrok_preset`) with the loss and activations of the study's
    variant ``name`` (:data:`STUDY_VARIANTS`)."""
    if name not in STUDY_VARIANTS:
        raise ConfigError(f"unknown variant {name!r}; known: {', '.join(STUDY_VARIANTS)}")
    loss, hidden, output = STUDY_VARIANTS[name]
    return dataclasses.replace(
        base, model=dataclasses.replace(base.model, mlp_activation=hidden,
                                        output_activation=output),
        train=dataclasses.replace(base.train, loss=loss))


def slingshot_preset() -> ExperimentConfig:
    """``experiments/slingshot.py``'s set-up (Thilak et al.'s slingshot effect): a small
    Nanda-style transformer (:func:`nanda_preset` with d_model 32, d_ff 128, 4 heads) on
    ``(x + y) mod 23`` from half the pairs, full-batch Adam (lr 1e-3, eps 1e-8) and NO weight
    decay, 3 seeds, 6000 steps, accuracy every 500 steps, checkpoints every 1000."""
    cfg = nanda_preset(steps=6_000, p=23, seeds=(0, 1, 2), fraction=0.5, lr=1e-3,
                       weight_decay=0.0, d_model=32, d_ff=128, n_heads=4, eval_every=500,
                       weight_init="default", loss_precision="float32")
    return dataclasses.replace(
        cfg, optim=dataclasses.replace(cfg.optim, name="adam", eps=1e-8),
        train=dataclasses.replace(cfg.train, checkpoint_every=1_000))


PRESETS = {
    "power": power_preset,
    "thesis": thesis_preset,
    "cpu_grok": lambda: cpu_grok_preset(),
    "nanda": lambda: nanda_preset(),
    "gromov": lambda: gromov_preset(),
    # experiments/progress_measures.py: the two papers at a CPU size, 3 seeds, 100 evaluations
    "nanda_cpu": lambda: nanda_preset(steps=4_000, p=53, seeds=(0, 1, 2), eval_every=40,
                                      weight_init="default", loss_precision="float32",
                                      checkpoint_every=4_000),
    "gromov_cpu": lambda: gromov_preset(steps=3_000, p=97, seeds=(0, 1, 2), eval_every=30),
    "slingshot": slingshot_preset,
    # experiments/omnigrok_mnist.py and mnist_variants.py: Omnigrok's two MNIST set-ups
    "omnigrok_script": lambda: omnigrok_preset(setup="script"),
    "omnigrok_notebook": lambda: omnigrok_preset(setup="notebook"),
}
"""Preset name -> function returning its :class:`ExperimentConfig`."""


def get(name: str) -> ExperimentConfig:
    """The preset called ``name`` (one of :data:`PRESETS`); a `ConfigError` names the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]()
