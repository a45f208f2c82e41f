"""Frozen configuration dataclasses.

A sweep is described by four configs: what to learn (`TaskConfig`), with which network
(`ModelConfig`), how to optimise (`OptimConfig`, `TrainConfig`) and over which grid of runs
(`SweepConfig`). Everything that differs between runs of one sweep lives in `SweepConfig`;
everything else is shared by all runs, so one compiled computation trains them all.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Optional

from jgrok.errors import ConfigError

MAX_RUNS = 1_000_000
"""Most runs in one sweep (the grid and its per-run data are built on the host)."""

FULL_BATCH = "full"
"""`TrainConfig.batch_size` of full-batch training: every training row at every step."""

MAX_WIDTH = 65_536
"""Largest model dimension accepted (widths, heads, layers, sequence length)."""


def setting(default, help: str):
    """A config field with its help text (the command-line flags are generated from the fields,
    `experiments/common_flags.py`)."""
    return dataclasses.field(default=default, metadata=dict(help=help))


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Which dataset. `op` is an operation name (see `jgrok.data.algorithmic.known_ops`),
    `group:<path>` for a Cayley-table CSV."""

    op: str = setting(
        "x2_plus_y2", "operation name (jgrok.data.algorithmic.known_ops), or group:<path> for a "
        "Cayley-table CSV")
    p: int = setting(97, "modulus (prime for the div operations)")
    label_noise: float = setting(0.0, "fraction of training answers replaced by random answers")

    def validate(self) -> None:
        if not 0.0 <= self.label_noise < 1.0:
            raise ConfigError(f"label_noise={self.label_noise} must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Network shape. `kind` is 'transformer' (Power et al.), 'mlp' (operand MLP for the
    algorithmic tasks) or 'dense' (MLP on feature vectors: MNIST, Wine Quality)."""

    kind: str = setting(
        "transformer", "network: transformer (Power et al.), mlp (operand MLP) or dense (MLP on "
        "feature vectors)")
    n_layers: int = setting(2, "transformer layers")
    d_model: int = setting(128, "transformer width (also the operand MLP's embedding size)")
    n_heads: int = setting(4, "attention heads")
    d_ff: Optional[int] = setting(None, "transformer feed-forward width (none: 4 * d_model)")
    use_bias: bool = setting(False, "biases in the transformer's layers")
    max_len: int = setting(8, "longest input sequence of the transformer")
    layer_norm: bool = setting(
        True, "LayerNorm in the transformer (off: Nanda et al.'s 1-layer model)")
    positions: str = setting("sinusoidal", "position embeddings: sinusoidal | learned")
    # MLP options
    mlp_width: int = setting(256, "MLP hidden width")
    mlp_depth: int = setting(2, "MLP hidden layers")
    mlp_activation: str = setting(
        "relu", "MLP activation: relu | gelu | quadratic | sigmoid | tanh")
    mlp_input: str = setting("embed", "operand MLP input: embed (learned embeddings) | onehot")
    output_activation: str = setting(
        "none", "applied to the outputs before the loss: none | sigmoid | softmax")
    # "default": Flax's (LeCun-normal kernels, N(0, 1/d) embeddings, zero biases; learned
    # positions N(0, 0.02^2)); "torch" (dense
    # MLP): PyTorch nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)); "nanda" (transformer): Nanda
    # et al.'s N(0, 1/d_model) for every weight but the unembedding's N(0, 1/vocab)
    weight_init: str = setting(
        "default", "weight init: default (Flax) | torch (dense MLP: nn.Linear's) | nanda "
        "(transformer: Nanda et al.'s)")
    # openai/grok's regularizers, off by default (results unchanged); training steps only, never
    # evaluation; the random draws of a step come from the run's key (`train.unguarded_step`)
    dropout: float = setting(
        0.0, "dropout rate on each transformer block's feed-forward output, before its residual "
        "sum (openai/grok's place), in training steps only (0: off)")
    weight_noise: float = setting(
        0.0, "std of Gaussian noise added to every parameter for each training step's forward "
        "and backward pass, a new draw each step (openai/grok's weight_noise; 0: off)")
    # How the same function is computed (none of these changes the parameters or checkpoints).
    shortcuts: bool = setting(
        True, "compute only what the output reads and apply linear maps of the embeddings to the "
        "vocabulary table: the same function, float32 outputs differ from the plain computation "
        "(off) by rounding (BUILD.md)")
    compute_dtype: str = setting(
        "float32", "dtype of the model's computation: float32 | bfloat16 (parameters, "
        "gradients, optimizer state, logits and loss stay float32)")
    matmul_precision: str = setting(
        "highest", "precision of float32 matmuls in the jitted steps: highest (full float32) | "
        "high (GPU/TPU: 3-pass bf16) | default (GPU: TF32, TPU: one bf16 pass); no effect on "
        "XLA:CPU (BUILD.md)")

    def validate(self) -> None:
        if self.kind not in ("transformer", "mlp", "dense"):
            raise ConfigError(f"unknown model {self.kind!r}; known: transformer, mlp, dense")
        if self.positions not in ("sinusoidal", "learned"):
            raise ConfigError(f"unknown positions {self.positions!r}; known: sinusoidal, learned")
        if self.output_activation not in ("none", "sigmoid", "softmax"):
            raise ConfigError(f"unknown output_activation {self.output_activation!r}; "
                              f"known: none, sigmoid, softmax")
        if self.kind == "transformer":
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
            if self.n_layers < 1:
                raise ConfigError(f"n_layers={self.n_layers} must be >= 1")
        for name in ("d_model", "n_heads", "mlp_width", "mlp_depth", "n_layers", "max_len"):
            v = getattr(self, name)
            if not 1 <= v <= MAX_WIDTH and not (name == "mlp_depth" and v == 0):
                raise ConfigError(f"{name}={v} must be in [1, {MAX_WIDTH}]")
        if self.d_ff is not None and not 1 <= self.d_ff <= 4 * MAX_WIDTH:
            raise ConfigError(f"d_ff={self.d_ff} must be in [1, {4 * MAX_WIDTH}]")
        if self.weight_init not in ("default", "torch", "nanda"):
            raise ConfigError(f"unknown weight_init {self.weight_init!r}; known: default, torch, "
                              f"nanda")
        for init, kind in (("torch", "dense"), ("nanda", "transformer")):
            if self.weight_init == init and self.kind != kind:
                raise ConfigError(f"weight_init {init!r} is implemented for the {kind} model "
                                  f"only, not for model {self.kind!r}")
        if self.mlp_activation not in ("relu", "gelu", "quadratic", "sigmoid", "tanh"):
            raise ConfigError(f"unknown activation {self.mlp_activation!r}; "
                              f"known: relu, gelu, quadratic, sigmoid, tanh")
        if self.mlp_input not in ("embed", "onehot"):
            raise ConfigError(f"unknown mlp_input {self.mlp_input!r}; known: embed, onehot")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"unknown compute_dtype {self.compute_dtype!r}; known: float32, "
                              f"bfloat16")
        if self.matmul_precision not in ("highest", "high", "default"):
            raise ConfigError(f"unknown matmul_precision {self.matmul_precision!r}; known: "
                              f"highest, high, default")
        if not (math.isfinite(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        if self.dropout and self.kind != "transformer":
            raise ConfigError(f"dropout is implemented for the transformer only (openai/grok's "
                              f"place: the feed-forward output), not for model {self.kind!r}")
        if not (math.isfinite(self.weight_noise) and self.weight_noise >= 0.0):
            raise ConfigError(f"weight_noise={self.weight_noise} must be a finite number >= 0")


GROKFAST_FILTERS = ("none", "ema", "ma")
"""`OptimConfig.grokfast`: off, the exponential or the windowed moving average."""


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer shared by all runs (lr and weight decay are per run, in `SweepConfig`)."""

    name: str = setting("adamw", "optimizer: adamw | adam | sgd")
    b1: float = setting(0.9, "Adam beta1")
    b2: float = setting(0.98, "Adam beta2")
    eps: float = setting(1e-8, "Adam epsilon")
    momentum: float = setting(0.0, "SGD momentum")
    warmup_steps: int = setting(10, "linear learning-rate warm-up steps")
    schedule: str = setting("constant", "learning rate after the warm-up: constant | cosine")
    decay_to_init: bool = setting(False, "weight decay pulls towards the initial weights, not zero")
    constant_norm: bool = setting(
        False, "after each step, rescale the weights to their initial global norm")
    # Grokfast (Lee et al. 2024): a low-pass filter of the gradients, amplified and added to
    # them before the optimizer; its strength lambda (and the EMA's alpha) are per-run grid axes
    # (SweepConfig.grokfast_lambdas, grokfast_alphas)
    grokfast: str = setting(
        "none", "Grokfast gradient filter before the optimizer: none | ema (g + lambda * EMA "
        "of the gradients) | ma (g + lambda * mean of the last grokfast_window gradients)")
    grokfast_window: int = setting(100, "Grokfast ma: gradients in the moving window")
    grokfast_warmup: bool = setting(
        True, "Grokfast ma: filter only once the window is full (the paper's warmup); off: "
        "the mean of the gradients so far from the first step")

    def validate(self) -> None:
        if self.name not in ("adamw", "adam", "sgd"):
            raise ConfigError(f"unknown optimizer {self.name!r}; known: adamw, adam, sgd")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"unknown schedule {self.schedule!r}; known: constant, cosine")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps={self.warmup_steps} must be >= 0")
        if self.grokfast not in GROKFAST_FILTERS:
            raise ConfigError(f"unknown grokfast filter {self.grokfast!r}; known: "
                              f"{', '.join(GROKFAST_FILTERS)}")
        if not 1 <= self.grokfast_window <= MAX_WIDTH:
            raise ConfigError(f"grokfast_window={self.grokfast_window} must be in "
                              f"[1, {MAX_WIDTH}]")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Loop settings shared by all runs."""

    steps: int = setting(100_000, "training steps per run")
    batch_size: Optional[int | str] = setting(
        None, "batch size: a number, full (every training row at every step) or none "
        "(min(512, ceil(N_train / 2)), the paper's rule)")
    loss: str = setting("ce", "loss: ce | mse (against one-hot answers)")
    loss_precision: str = setting(
        "float32", "cross-entropy: float32 (optax's logsumexp) | high (log1p of the other "
        "classes' weights: accurate where float32's rounds a small loss to 0, as a float64 loss)")
    eval_every: int = setting(100, "evaluate every this many steps")
    log_eval: Optional[int] = setting(
        None, "this many log-spaced evaluations instead of every eval_every (none: every "
        "eval_every)")
    checkpoint_every: int = setting(10_000, "checkpoint interval in steps")
    keep_checkpoints: int = setting(3, "checkpoint versions kept")
    keep_checkpoint_every: Optional[int] = setting(
        None, "also keep, for later analysis, the checkpoint nearest each multiple of this many "
        "steps besides the last keep_checkpoints (none: only those)")
    stop_when_decided: int = setting(
        0, "end the sweep once every run has generalized (validation accuracy >= the phase "
        "rule's gen_acc) at each of its last this many evaluations, or diverged; the tables and "
        "a checkpoint are written as at the end (0: train every run to the last step)")

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps} must be >= 1")
        b = self.batch_size
        if b is not None and b != FULL_BATCH and (isinstance(b, bool) or not isinstance(b, int)
                                                  or b < 1):
            raise ConfigError(f"batch_size={b!r} must be a positive integer, {FULL_BATCH!r} or "
                              f"none (the paper's rule)")
        if self.loss not in ("ce", "mse"):
            raise ConfigError(f"unknown loss {self.loss!r}; known: ce, mse")
        if self.loss_precision not in ("float32", "high"):
            raise ConfigError(f"unknown loss_precision {self.loss_precision!r}; known: float32, "
                              f"high")
        if self.eval_every < 1:
            raise ConfigError(f"eval_every={self.eval_every} must be >= 1")
        if self.log_eval is not None and self.log_eval < 1:
            raise ConfigError(f"log_eval={self.log_eval} must be >= 1, or none for evaluations "
                              f"every eval_every")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every} must be >= 1")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"keep_checkpoints={self.keep_checkpoints} must be >= 1")
        if self.keep_checkpoint_every is not None and self.keep_checkpoint_every < 1:
            raise ConfigError(f"keep_checkpoint_every={self.keep_checkpoint_every} must be >= 1, "
                              f"or none to keep only the last keep_checkpoints")
        if self.stop_when_decided < 0:
            raise ConfigError(f"stop_when_decided={self.stop_when_decided} must be >= 0 (0: off)")

    def eval_steps(self) -> tuple[int, ...]:
        """Steps at which every run is evaluated: 0, ..., steps (always both ends)."""
        if self.log_eval is not None:
            pts = {int(round(x)) for x in _geomspace(1, self.steps, self.log_eval)}
        else:
            pts = set(range(self.eval_every, self.steps + 1, self.eval_every))
        pts |= {0, self.steps}
        return tuple(sorted(pts))


def _geomspace(lo: float, hi: float, n: int) -> list[float]:
    if n == 1:
        return [hi]
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


GRID_AXES = ("seed", "split_seed", "fraction", "weight_decay", "lr", "init_scale",
             "grokfast_lamb", "grokfast_alpha")
"""The keys a run's grid coordinates may have, in their order. The Grokfast axes are present
only where they are used (`SweepConfig.grid`): a sweep without the filter has the six before."""

#: the Grokfast axes' values of a sweep without the filter
GROKFAST_OFF = dict(grokfast_lambdas=(0.0,), grokfast_alphas=(0.98,))

#: SweepConfig fields that list the values of one axis each (seeds and split seeds aside)
_VALUE_AXES = ("fractions", "weight_decays", "lrs", "init_scales", "grokfast_lambdas",
               "grokfast_alphas")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """The grid: the Cartesian product of the listed values, one run per point.

    `split_seeds=None` pairs the split seed with the init seed (run i of seed s uses split s),
    as in the paper, where each seed gives a new split and a new initialisation.
    """

    seeds: tuple[int, ...] = setting((0,), "init seeds")
    split_seeds: Optional[tuple[int, ...]] = setting(
        None, "split seeds crossed with the init seeds (none: paired, split seed = init seed)")
    fractions: tuple[float, ...] = setting((0.5,), "training fractions")
    weight_decays: tuple[float, ...] = setting((1.0,), "weight decays")
    lrs: tuple[float, ...] = setting((1e-3,), "learning rates")
    # every initial parameter, biases included, multiplied by this (Omnigrok's alpha)
    init_scales: tuple[float, ...] = setting(
        (1.0,), "every initial parameter multiplied by these (Omnigrok's alpha)")
    grokfast_lambdas: tuple[float, ...] = setting(
        (0.0,), "Grokfast amplification lambda of the filtered gradient (with optim.grokfast "
        "ema or ma; 0 leaves the gradients as they are)")
    grokfast_alphas: tuple[float, ...] = setting(
        (0.98,), "Grokfast ema: the moving average's decay alpha (with optim.grokfast=ema)")

    def validate(self) -> None:
        for name in ("seeds",) + _VALUE_AXES:
            if len(getattr(self, name)) == 0:
                raise ConfigError(f"{name} is empty; give at least one value")
        for f in self.fractions:
            # 1.0 is meaningful only for datasets with a fixed held-out set (MNIST, Wine)
            if not (isinstance(f, (int, float)) and math.isfinite(f) and 0.0 < f <= 1.0):
                raise ConfigError(f"training fraction {f} is outside (0, 1)")
        for wd in self.weight_decays:
            if not (math.isfinite(wd) and wd >= 0):
                raise ConfigError(f"weight decay {wd} must be a finite number >= 0")
        for lr in self.lrs:
            if not (math.isfinite(lr) and lr > 0):
                raise ConfigError(f"learning rate {lr} must be a finite number > 0")
        for a in self.init_scales:
            if not (math.isfinite(a) and a > 0):
                raise ConfigError(f"init scale {a} must be a finite number > 0")
        for lamb in self.grokfast_lambdas:
            if not (math.isfinite(lamb) and lamb >= 0):
                raise ConfigError(f"grokfast lambda {lamb} must be a finite number >= 0")
        for a in self.grokfast_alphas:
            if not (math.isfinite(a) and 0 <= a < 1):
                raise ConfigError(f"grokfast alpha {a} must be in [0, 1)")
        for s in tuple(self.seeds) + tuple(self.split_seeds or ()):
            if int(s) != s or not 0 <= s < 2**32:
                raise ConfigError(f"seed {s} must be an integer in [0, 2**32)")
        if self.n_runs() > MAX_RUNS:
            raise ConfigError(f"the sweep has {self.n_runs():,} runs, more than the {MAX_RUNS:,} "
                              f"one sweep can hold; split it into several sweeps")

    def n_runs(self) -> int:
        """Number of runs in `grid()`, without building it."""
        n_split = 1 if self.split_seeds is None else len(self.split_seeds)
        return math.prod(len(getattr(self, k)) for k in ("seeds",) + _VALUE_AXES) * n_split

    def grokfast_axes(self, grokfast: str = "none") -> tuple[str, ...]:
        """The Grokfast keys of this grid's rows under filter `grokfast`
        (`OptimConfig.grokfast`): `grokfast_lamb` with a filter, `grokfast_alpha` with the EMA,
        and either one wherever its values are not those of a sweep without the filter (an
        invalid experiment, `ExperimentConfig.validate`, whose runs stay told apart)."""
        keys = []
        if grokfast != "none" or tuple(self.grokfast_lambdas) != GROKFAST_OFF["grokfast_lambdas"]:
            keys.append("grokfast_lamb")
        if grokfast == "ema" or tuple(self.grokfast_alphas) != GROKFAST_OFF["grokfast_alphas"]:
            keys.append("grokfast_alpha")
        return tuple(keys)

    def grid(self, grokfast: str = "none") -> list[dict]:
        """One dict per run, keys `GRID_AXES` (the Grokfast ones where `grokfast_axes` has
        them; `ExperimentConfig.grid` passes the experiment's filter), in a fixed order (seed
        varies fastest last; a sweep's order without Grokfast axes is the one it had before
        they were added)."""
        rows = []
        splits = self.split_seeds
        gf = self.grokfast_axes(grokfast)
        for frac, wd, lr, a, lamb, ema in itertools.product(
                self.fractions, self.weight_decays, self.lrs, self.init_scales,
                self.grokfast_lambdas, self.grokfast_alphas):
            extra = dict(grokfast_lamb=float(lamb), grokfast_alpha=float(ema))
            for seed in self.seeds:
                for split in (splits if splits is not None else (seed,)):
                    rows.append(dict(seed=int(seed), split_seed=int(split), fraction=float(frac),
                                     weight_decay=float(wd), lr=float(lr),
                                     init_scale=float(a), **{k: extra[k] for k in gf}))
        return rows


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    task: TaskConfig = TaskConfig()
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    sweep: SweepConfig = SweepConfig()

    def validate(self) -> None:
        for part in (self.task, self.model, self.optim, self.train, self.sweep):
            part.validate()
        sw, kind = self.sweep, self.optim.grokfast
        for name, used in (("grokfast_lambdas", kind != "none"),
                           ("grokfast_alphas", kind == "ema")):
            if not used and tuple(getattr(sw, name)) != GROKFAST_OFF[name]:
                raise ConfigError(f"{name}={list(getattr(sw, name))} is not used by "
                                  f"grokfast={kind!r}; set --grokfast="
                                  f"{'ema' if name == 'grokfast_alphas' else 'ema or ma'}")

    def grid(self) -> list[dict]:
        """The runs of the sweep (`SweepConfig.grid` under this experiment's Grokfast filter)."""
        return self.sweep.grid(self.optim.grokfast)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ExperimentConfig":
        def tup(x):
            return None if x is None else tuple(x)

        sw = dict(d["sweep"])
        for k in ("seeds",) + _VALUE_AXES:
            if k in sw:
                sw[k] = tup(sw[k])
        sw["split_seeds"] = tup(sw.get("split_seeds"))
        train = dict(d["train"])
        # run directories written before 2026-12-02 stored sentinels: log_eval 0 = none,
        # batch_size 0 = full batch
        if train.get("log_eval") == 0:
            train["log_eval"] = None
        if train.get("batch_size") == 0:
            train["batch_size"] = FULL_BATCH
        return ExperimentConfig(task=TaskConfig(**d["task"]), model=ModelConfig(**d["model"]),
                                optim=OptimConfig(**d["optim"]), train=TrainConfig(**train),
                                sweep=SweepConfig(**sw))

