import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


@pytest.fixture
def tiny_cfg():
    """A transformer small enough to train tens of steps in a second."""
    from jgrok.config import (ExperimentConfig, ModelConfig, SweepConfig, TaskConfig,
                              TrainConfig)

    return ExperimentConfig(
        task=TaskConfig(op="add", p=7),
        model=ModelConfig(kind="transformer", n_layers=1, d_model=16, n_heads=2),
        train=TrainConfig(steps=30, eval_every=10, checkpoint_every=10, batch_size=8),
        sweep=SweepConfig(seeds=(0, 1), fractions=(0.4, 0.7), weight_decays=(1.0,),
                          lrs=(1e-3,)))


def dataset_for(cfg):
    from jgrok.data.algorithmic import make_task
    from jgrok.data.split import dataset_from_task

    return dataset_from_task(make_task(cfg.task.op, cfg.task.p))


def short_training_cfg(kind):
    """40 AdamW steps of a 2-layer transformer or an MLP on addition mod 11, batch 64 (larger
    than the vocabulary, so the models' table shortcuts are taken): for comparing two ways of
    computing the same training."""
    from jgrok.config import (ExperimentConfig, ModelConfig, SweepConfig, TaskConfig,
                              TrainConfig)

    return ExperimentConfig(
        task=TaskConfig(op="add", p=11),
        model=ModelConfig(kind=kind, n_layers=2, d_model=32, n_heads=4, mlp_width=64),
        train=TrainConfig(steps=40, eval_every=10, batch_size=64),
        sweep=SweepConfig(seeds=(0, 1), fractions=(0.6,)))


def assert_same_training(got, want):
    """Two `train_sweep` results (metrics table, final state) agree to float32 rounding:
    metrics within rtol 1e-4 / atol 1e-5, parameters within rtol 1e-4 / atol 5e-5; the metrics
    really vary. AdamW turns rounding into parameter differences of up to a few 1e-5 in 40
    steps (it divides each gradient by its own running scale): measured for the transformer's
    shortcuts against the plain computation, 1.7e-5 with einsum attention, 1.2e-5 and 2.4e-5
    with two element-wise forms of it; a wrong gradient moves them by ~lr = 1e-3 a step."""
    import jax
    import numpy as np

    from jgrok import train

    (df1, s1), (df0, s0) = got, want
    metrics = list(train.METRIC_NAMES)
    assert df0[metrics].to_numpy().std() > 0
    np.testing.assert_allclose(df1[metrics].to_numpy(), df0[metrics].to_numpy(), rtol=1e-4,
                               atol=1e-5)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s0.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)


# ------------------------------------------------------------------------------ test tiers
# `pytest` runs the fast tier; `pytest -m slow` the tests marked slow: entry points in child
# processes (CLI, notebook, several processes) and the longer end-to-end trainings.


def script_path(name: str) -> str:
    return os.path.join(ROOT, "experiments", name)


def child_env(**extra) -> dict:
    """The environment of a child process: this one's, on the CPU, plus `extra`."""
    return dict(os.environ, JAX_PLATFORMS="cpu", **extra)


def run_script(name: str, *args, timeout: float = 300, env: dict | None = None):
    """Run ``experiments/<name>`` with `args` in a child process; the CompletedProcess
    (text stdout and stderr)."""
    import subprocess

    return subprocess.run([sys.executable, script_path(name), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=child_env() if env is None else env)


def run_python(code: str, timeout: float = 300, env: dict | None = None):
    """Run `code` with ``python -c`` in a child process; the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=child_env() if env is None else env)


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def assert_one_line_error(r, needle: str = "") -> str:
    """The child exited 2 with one ``error: ...`` line on stderr that contains `needle`."""
    lines = error_lines(r.stderr)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr[-2000:]
    assert needle in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------ figure contents


@pytest.fixture
def drawn_figures(monkeypatch):
    """The matplotlib Figures saved while the test runs, in order (each once), so a test can
    check what a figure function drew: its axes, lines, limits and labels."""
    from matplotlib.figure import Figure

    seen: list = []
    real = Figure.savefig

    def savefig(self, *a, **k):
        if not any(f is self for f in seen):
            seen.append(self)
        return real(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return seen
