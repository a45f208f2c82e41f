"""One sweep over two CPU processes (jax.distributed on localhost, gloo collectives): each
process trains its slice of the run axis, process 0 writes the merged table, and the table
equals that of the same sweep in one process."""

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "phase_diagram.py")
TINY = ["--op=add", "--p=7", "--model=transformer", "--n_layers=1", "--d_model=16",
        "--n_heads=2", "--steps=30", "--eval_every=10", "--checkpoint_every=10",
        "--batch_size=8", "--fractions=0.4,0.7", "--seeds=3", "--nofigures"]
METRICS = ["train_loss", "train_acc", "val_loss", "val_acc", "param_norm", "last_layer_norm"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    return env


def _table(path):
    return pd.read_csv(path).sort_values(["run", "step"]).reset_index(drop=True)


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    one = tmp_path / "one"
    r = subprocess.run([sys.executable, SCRIPT, *TINY, f"--out={one}"], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    two = tmp_path / "two"
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, SCRIPT, *TINY, f"--out={two}",
                               f"--coordinator=127.0.0.1:{port}", "--num_processes=2",
                               f"--process_id={i}"], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=400))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "devices: 2 x" in outs[0][0]

    a, b = _table(one / "metrics.csv"), _table(two / "metrics.csv")
    assert len(a) == len(b) == 6 * 4  # 6 runs x eval steps 0, 10, 20, 30
    assert (a[["run", "step", "seed", "fraction"]].to_numpy()
            == b[["run", "step", "seed", "fraction"]].to_numpy()).all()
    np.testing.assert_allclose(a[METRICS].to_numpy(), b[METRICS].to_numpy(), rtol=2e-5,
                               atol=2e-6)
    # Orbax wrote one checkpoint per step for both processes' shards
    steps = sorted(int(d.name) for d in (two / "checkpoints").iterdir() if d.name.isdigit())
    assert steps[-1] == 30
