"""Plain PyTorch training loop of the benchmark models, one run at a time (the baseline for
`bench_throughput.py`).

Same architectures as jgrok's: the Power et al. transformer (token embedding + fixed sinusoidal
positions, post-LayerNorm blocks x = LN(x + Attn(x)); x = LN(x + FFN(x)), causal multi-head
attention, ReLU FFN, no biases, untied unembedding of the last position) and the operand MLP
(shared embedding of x and y, concatenated, hidden ReLU layers with biases, linear read-out).
Same batch size and AdamW(lr 1e-3, betas (0.9, 0.98), weight decay 1). Each step draws a batch
without replacement from the run's training rows, as jgrok does. Arrangements: one process
with 1 or 2 intra-op threads (`run_steps_per_s`), N single-threaded processes side by side
with their rates summed (`parallel_run_steps_per_s`, process-per-core), either with
`torch.compile` (`compile=True`). `device="cuda"` trains on the GPU instead (the processes
side by side then share it; TF32 stays off, PyTorch's default: full float32 matmuls, as
jgrok's default `matmul_precision="highest"`).

    python benchmarks/torch_baseline.py --model=mlp --steps=200
"""

from __future__ import annotations

import argparse
import time

import numpy as np

try:
    import torch
    from torch import nn
    import torch.nn.functional as F
except ImportError:  # torch is an optional dependency (pip install -e ".[bench]")
    torch = None


def available() -> bool:
    return torch is not None


if torch is not None:

    def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
        # the same table as jgrok's model (a NumPy array; no JAX computation involved)
        from jgrok.models.transformer import sinusoidal_positions as table

        return torch.from_numpy(table(max_len, d_model))

    class Block(nn.Module):
        def __init__(self, d_model: int, n_heads: int, d_ff: int):
            super().__init__()
            self.h = n_heads
            self.q = nn.Linear(d_model, d_model, bias=False)
            self.k = nn.Linear(d_model, d_model, bias=False)
            self.v = nn.Linear(d_model, d_model, bias=False)
            self.o = nn.Linear(d_model, d_model, bias=False)
            self.attn_norm = nn.LayerNorm(d_model, bias=False)
            self.ffn_in = nn.Linear(d_model, d_ff, bias=False)
            self.ffn_out = nn.Linear(d_ff, d_model, bias=False)
            self.ffn_norm = nn.LayerNorm(d_model, bias=False)

        def forward(self, x):
            b, t, d = x.shape
            split = lambda z: z.view(b, t, self.h, d // self.h).transpose(1, 2)  # noqa: E731
            a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)),
                                               split(self.v(x)), is_causal=True)
            x = self.attn_norm(x + self.o(a.transpose(1, 2).reshape(b, t, d)))
            return self.ffn_norm(x + self.ffn_out(F.relu(self.ffn_in(x))))

    class Transformer(nn.Module):
        def __init__(self, vocab: int, n_layers=2, d_model=128, n_heads=4, d_ff=512,
                     max_len=8):
            super().__init__()
            self.embed = nn.Embedding(vocab, d_model)
            self.register_buffer("pe", sinusoidal_positions(max_len, d_model))
            self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff) for _ in range(n_layers))
            self.unembed = nn.Linear(d_model, vocab, bias=False)

        def forward(self, tokens):
            x = self.embed(tokens) + self.pe[: tokens.shape[-1]]
            for blk in self.blocks:
                x = blk(x)
            return self.unembed(x[:, -1])

    class OperandMLP(nn.Module):
        def __init__(self, vocab: int, width=256, depth=2, d_embed=128):
            super().__init__()
            self.embed = nn.Embedding(vocab, d_embed)
            layers, d_in = [], 2 * d_embed
            for _ in range(depth):
                layers += [nn.Linear(d_in, width), nn.ReLU()]
                d_in = width
            self.hidden = nn.Sequential(*layers)
            self.unembed = nn.Linear(d_in, vocab)

        def forward(self, tokens):
            h = torch.cat([self.embed(tokens[:, 0]), self.embed(tokens[:, 2])], dim=-1)
            return self.unembed(self.hidden(h))


def make_model(kind: str, vocab: int):
    return Transformer(vocab) if kind == "transformer" else OperandMLP(vocab)


def train_one(kind: str, inputs: np.ndarray, targets: np.ndarray, vocab: int, fraction: float,
              batch: int, steps: int, seed: int = 0, warmup: int = 3, compile: bool = False,
              barrier=None, device: str = "cpu") -> float:
    """Train one run for `warmup` + `steps` steps; returns the seconds of the `steps` steps.
    `compile`: the model goes through `torch.compile` (its compilation happens in the warm-up
    steps). `barrier`: wait on it after the warm-up (processes started side by side).
    `device`: where the model, the data and the batch sampling live ("cpu", "cuda")."""
    torch.manual_seed(seed)
    model = make_model(kind, vocab).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=1.0)
    fwd = torch.compile(model) if compile else model
    x_all = torch.from_numpy(np.asarray(inputs, np.int64)).to(device)
    y_all = torch.from_numpy(np.asarray(targets, np.int64)).to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    n_train = int(round(fraction * len(x_all)))
    train_rows = torch.randperm(len(x_all), generator=g, device=device)[:n_train]
    b = min(batch, n_train)

    def step():
        idx = train_rows[torch.randperm(n_train, generator=g, device=device)[:b]]
        loss = F.cross_entropy(fwd(x_all[idx]), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        loss = step()
    float(loss.detach())  # waits for the device
    if barrier is not None:
        barrier.wait()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss.detach())
    return time.perf_counter() - t


def run_steps_per_s(kind: str, inputs, targets, vocab: int, fraction: float, batch: int,
                    steps: int, runs: int = 1, threads: int = 2, compile: bool = False,
                    device: str = "cpu") -> float:
    """Run-steps/s of `runs` runs trained one after another (`threads` intra-op threads)."""
    torch.set_num_threads(threads)
    total = sum(train_one(kind, inputs, targets, vocab, fraction, batch, steps, seed=r,
                          compile=compile, device=device)
                for r in range(runs))
    return runs * steps / total


def _worker(args):
    """One process of `parallel_run_steps_per_s`: single-threaded, one run."""
    kind, inputs, targets, vocab, fraction, batch, steps, seed, compile, barrier, device = args
    torch.set_num_threads(1)
    return steps / train_one(kind, inputs, targets, vocab, fraction, batch, steps, seed=seed,
                             compile=compile, barrier=barrier, device=device)


def parallel_run_steps_per_s(kind: str, inputs, targets, vocab: int, fraction: float,
                             batch: int, steps: int, procs: int = 2,
                             compile: bool = False, device: str = "cpu") -> float:
    """Run-steps/s of `procs` single-threaded processes, one run each, started side by side
    (after their warm-ups, together at a barrier) and summed: process-per-core (on "cuda":
    that many processes sharing the GPU)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(procs)
        with ctx.Pool(procs) as pool:
            rates = pool.map(_worker, [(kind, np.asarray(inputs), np.asarray(targets), vocab,
                                        fraction, batch, steps, r, compile, barrier, device)
                                       for r in range(procs)])
    return float(sum(rates))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=("transformer", "mlp"), default="mlp")
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    if not available():
        print("torch not installed: skipped")
        return
    from jgrok.data.algorithmic import make_task

    p = 97 if args.model == "transformer" else 23
    task = make_task("x2_plus_y2", p)
    batch = 512 if args.model == "transformer" else 256
    rate = run_steps_per_s(args.model, task.inputs, task.targets, task.vocab_size, 0.5, batch,
                           args.steps)
    print(f"{args.model}: {rate:.1f} run-steps/s (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
