"""Probe (not library code): does the course study's late rise of the weight norm under
cross-entropy come from float64? The same training, written out in plain JAX + optax, in
float32 and in float64: Omnigrok's notebook set-up (784-200-200-10 ReLU MLP on the first 1000
MNIST training images, torch's nn.Linear init times alpha = 8, AdamW lr 1e-3, wd 0.01,
betas 0.9/0.999, batch 200), cross-entropy on the linear output, 1e5 steps.

    JAX_PLATFORMS=cpu python results/study_long/ce_float64/probe.py --dtype=float64 --seed=0 \
        --data_dir=/work/shared/data/mnist --out=results/study_long/ce_float64/float64_s0.csv
"""

import argparse
import time

ap = argparse.ArgumentParser()
ap.add_argument("--dtype", choices=["float32", "float64"], required=True)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--steps", type=int, default=100_000)
ap.add_argument("--every", type=int, default=5000)
ap.add_argument("--data_dir", required=True)
ap.add_argument("--out", required=True)
args = ap.parse_args()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", args.dtype == "float64")
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jgrok.data.omnigrok import mnist_dataset  # noqa: E402

dt = jnp.float64 if args.dtype == "float64" else jnp.float32
ds = mnist_dataset(args.data_dir, n_train=1000)
x_tr, y_tr = ds.inputs[~ds.val_rows], ds.targets[~ds.val_rows]
x_te, y_te = ds.inputs[ds.val_rows], ds.targets[ds.val_rows]
x_tr, x_te = jnp.asarray(x_tr, dt), jnp.asarray(x_te, dt)
y_tr, y_te = jnp.asarray(y_tr), jnp.asarray(y_te)

rng = np.random.default_rng(args.seed)
params = []
for fan_in, fan_out in ((784, 200), (200, 200), (200, 10)):
    bound = 1 / np.sqrt(fan_in)
    params.append((jnp.asarray(8 * rng.uniform(-bound, bound, (fan_in, fan_out)), dt),
                   jnp.asarray(8 * rng.uniform(-bound, bound, (fan_out,)), dt)))


def logits(p, x):
    for i, (w, b) in enumerate(p):
        x = x @ w + b
        if i < len(p) - 1:
            x = jax.nn.relu(x)
    return x


def loss(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits(p, x), y).mean()


opt = optax.adamw(1e-3, b1=0.9, b2=0.999, weight_decay=0.01)
state = opt.init(params)


@jax.jit
def steps(p, s, key, n):
    def body(_, c):
        p, s, key = c
        key, k = jax.random.split(key)
        idx = jax.random.choice(k, 1000, (200,), replace=False)
        g = jax.grad(loss)(p, x_tr[idx], y_tr[idx])
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, key
    return jax.lax.fori_loop(0, n, body, (p, s, key))


@jax.jit
def measure(p):
    z = logits(p, x_tr)
    grads = jax.grad(loss)(p, x_tr, y_tr)
    return dict(train_loss=loss(p, x_tr, y_tr), train_acc=(z.argmax(1) == y_tr).mean(),
                val_acc=(logits(p, x_te).argmax(1) == y_te).mean(),
                weight_norm=jnp.sqrt(sum((a ** 2).sum() for a in jax.tree.leaves(p))),
                grad_norm=jnp.sqrt(sum((a ** 2).sum() for a in jax.tree.leaves(grads))),
                zero_grad_share=jnp.mean(jnp.concatenate(
                    [(a == 0).ravel() for a in jax.tree.leaves(grads)]).astype(jnp.float32)))


key = jax.random.PRNGKey(args.seed)
rows, t0, done = [], time.perf_counter(), 0
while True:
    m = {k: float(v) for k, v in measure(params).items()}
    rows.append(dict(step=done, dtype=args.dtype, seed=args.seed, **m))
    print(rows[-1], f"{time.perf_counter() - t0:.0f}s", flush=True)
    if done >= args.steps:
        break
    n = min(args.every, args.steps - done)
    params, state, key = steps(params, state, key, n)
    done += n
    import pandas as pd
    pd.DataFrame(rows).to_csv(args.out, index=False)
import pandas as pd  # noqa: E402

pd.DataFrame(rows).to_csv(args.out, index=False)
