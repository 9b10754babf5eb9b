"""PyTorch reference for dml's default job: the same small CNN, data, sampler, augmentation,
loss, optimiser and evaluation, trained for 200 iterations on the bundled Fashion-MNIST split
(classes 0–4 train, 5–9 test), for several seeds.

Prints one JSON line per seed: Recall@1/2/4/8, MAP@R and R-Precision before and after training
(leave-one-out on the 5,000 test images, cosine similarity) and the mean time per iteration.
Usage: python pytorch_train_fashion.py pml|spec [seeds...]  (the MS loss of pytorch-metric-learning, or
docs/losses.md's, which dml implements)
"""
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_metric_learning import losses, miners

from pytorch_train_step import SmallCnn

ROOT = Path(__file__).resolve().parent.parent / "engine" / "data" / "fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def idx(path):
    data = gzip.open(path).read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def metrics(emb, labels, ks=(1, 2, 4, 8)):
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1, kind="stable")
    hits = labels[order] == labels[:, None]
    out = {"recall_at_k": {str(k): float(hits[:, :k].any(1).mean()) for k in ks}}
    r = np.bincount(labels)[labels] - 1
    aps, rps = [], []
    for i in range(len(labels)):
        h = hits[i, : r[i]]
        prec = np.cumsum(h) / np.arange(1, r[i] + 1)
        aps.append((prec * h).sum() / r[i])
        rps.append(h.mean())
    out["map_at_r"], out["r_precision"] = float(np.mean(aps)), float(np.mean(rps))
    return out


def ms_as_specified(emb, labels, alpha=2.0, beta=40.0, base=0.5, epsilon=0.1):
    """docs/losses.md's `ms` (as in the MS reference code): an anchor whose mined positives or mined
    negatives are empty contributes 0; the mean is over all n anchors. pytorch-metric-learning's
    MultiSimilarityLoss instead keeps the non-empty side of such an anchor."""
    sim = emb @ emb.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    with torch.no_grad():
        max_neg = sim.masked_fill(~neg, -torch.inf).amax(1, keepdim=True)
        min_pos = sim.masked_fill(~pos, torch.inf).amin(1, keepdim=True)
        pos_m = pos & (sim - epsilon < max_neg)
        neg_m = neg & (sim + epsilon > min_pos)
        active = pos_m.any(1) & neg_m.any(1)
    zero = torch.zeros(len(labels), 1)
    pos_term = torch.logsumexp(torch.cat([zero, (-alpha * (sim - base)).masked_fill(~pos_m, -torch.inf)], 1), 1) / alpha
    neg_term = torch.logsumexp(torch.cat([zero, (beta * (sim - base)).masked_fill(~neg_m, -torch.inf)], 1), 1) / beta
    return ((pos_term + neg_term) * active).sum() / len(labels)


def embed(net, x):
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(x[i:i + 250]) for i in range(0, len(x), 250)]).numpy()
    net.train()
    return out


def run(seed, variant, iterations=200, p=5, k=16):
    images = idx(ROOT / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = idx(ROOT / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    x = torch.from_numpy((images - MEAN) / STD).unsqueeze(1)
    train = labels < 5
    xtr, ytr, xte, yte = x[train], labels[train], x[~train], labels[~train]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SmallCnn()
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=5e-4)
    loss_fn, miner = losses.MultiSimilarityLoss(2, 40, 0.5), miners.MultiSimilarityMiner(0.1)
    by_class = {c: np.flatnonzero(ytr == c) for c in np.unique(ytr)}
    before = metrics(embed(net, xte), yte)
    start = time.perf_counter()
    for _ in range(iterations):
        classes = rng.choice(list(by_class), p, replace=False)
        batch = np.concatenate([rng.choice(by_class[c], k, replace=False) for c in classes])
        xb = xtr[batch].clone()
        flip = torch.from_numpy(rng.random(len(batch)) < 0.5)
        xb[flip] = xb[flip].flip(-1)
        yb = torch.from_numpy(ytr[batch])
        emb = net(xb)
        loss = loss_fn(emb, yb, miner(emb, yb)) if variant == "pml" else ms_as_specified(emb, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ms = (time.perf_counter() - start) / iterations * 1e3
    after = metrics(embed(net, xte), yte)
    return {"loss": variant, "seed": seed, "before": before, "after": after, "ms_per_iteration": round(ms, 1)}


if __name__ == "__main__":
    torch.set_num_threads(2)
    variant = sys.argv[1] if len(sys.argv) > 1 else "pml"
    for seed in [int(s) for s in sys.argv[2:]] or [0, 1, 2]:
        print(json.dumps(run(seed, variant)), flush=True)
