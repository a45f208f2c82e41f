"""Config search for a CPU grokking preset (the search behind `cpu_grok`; its runs: runs.md)."""
import json, sys, time, dataclasses as dc
import numpy as np, pandas as pd
from jgrok.config import *
from jgrok.data.algorithmic import make_task
from jgrok.data.split import dataset_from_task
from jgrok import sweep

def summarize(df, pf=5.0, df_=10.0):
    out = []
    for run, g in df.groupby("run"):
        g = g.sort_values("step")
        s, tr, va = g.step.values, g.train_acc.values, g.val_acc.values
        fi = np.flatnonzero(tr >= 0.99)
        gi = np.flatnonzero(va >= 0.99)
        fit = s[fi[0]] if fi.size else np.nan
        gen = s[gi[0]] if gi.size else np.nan
        vfit = va[fi[0]] if fi.size else np.nan
        ph = "conf"
        if fi.size:
            half = vfit + 0.5 * (1 - vfit)
            above = np.flatnonzero((s >= fit) & (va >= half))
            half_step = s[above[0]] if above.size else np.inf
            if not gi.size: ph = "mem"
            elif half_step >= pf * max(fit, 1) and gen >= df_ * max(fit, 1): ph = "GROK"
            elif gen >= 2 * max(fit, 1): ph = "slow"
            else: ph = "comp"
        r = g.iloc[0]
        out.append(dict(frac=r.fraction, seed=r.seed, a=r.init_scale, wd=r.weight_decay, lr=r.lr,
                        ph=ph, fit=fit, vfit=round(vfit, 3), gen=gen, fin=round(va[-1], 3)))
    return pd.DataFrame(out)

def run(name, op, p, model, optim, train, sw):
    cfg = ExperimentConfig(task=TaskConfig(op=op, p=p), model=model, optim=optim, train=train, sweep=sw)
    cfg.validate()
    ds = dataset_from_task(make_task(op, p))
    t = time.time()
    df, _ = sweep.train_sweep(cfg, ds)
    wall = time.time() - t
    df.to_csv(f"/tmp/search/{name}.csv", index=False)
    s = summarize(df)
    print(f"=== {name} op={op} p={p} wall={wall:.0f}s runs={len(s)}\n{model}\n{optim}\n{train}", flush=True)
    print(s.to_string(), flush=True)
    print(s.groupby(["a", "wd", "lr", "frac"]).ph.agg(lambda x: " ".join(sorted(x))).to_string(), flush=True)
    return s

if __name__ == "__main__":
    exec(open(sys.argv[1]).read())
