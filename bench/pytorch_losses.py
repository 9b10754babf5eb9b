"""pytorch-metric-learning side of the loss benchmark (see run.sh).

Prints `name n d median_ms` for the case given as `reps name n`, forward + backward on the CPU, with the inputs of
src/bin/losses.rs: unit-length random embeddings, P×K labels (K = 5 for n = 80, 10 for n = 1000).
The closest pytorch-metric-learning setups:
  ms               MultiSimilarityMiner(epsilon=0.1) + MultiSimilarityLoss(2, 40, 0.5)
  lifted           LiftedStructureLoss(neg_margin=1, pos_margin=0)
  triplet_semihard TripletMarginMiner(margin=0.2, type_of_triplets="semihard") + TripletMarginLoss(0.2)
  proxy_nca        ProxyNCALoss(classes, 512, softmax_scale=1)
  proxy_anchor     ProxyAnchorLoss(classes, 512, margin=0.1, alpha=32)
  norm_softmax     NormalizedSoftmaxLoss(classes, 512, temperature=0.05)
  soft_triple      SoftTripleLoss(classes, 512, centers_per_class=10, la=20, gamma=0.1, margin=0.01)
  arcface          ArcFaceLoss(classes, 512, margin=28.6, scale=64)
with classes = the batch's 16 (n = 80) or 100 (n = 1000) classes; their proxies need gradients too.
"""
import statistics
import sys
import time

import torch
from pytorch_metric_learning import losses, miners


def setups(classes, d):
    yield "ms", miners.MultiSimilarityMiner(epsilon=0.1), losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5)
    yield "lifted", None, losses.LiftedStructureLoss(neg_margin=1, pos_margin=0)
    yield "triplet_semihard", miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"), losses.TripletMarginLoss(margin=0.2)
    yield "proxy_nca", None, losses.ProxyNCALoss(classes, d, softmax_scale=1)
    yield "proxy_anchor", None, losses.ProxyAnchorLoss(classes, d, margin=0.1, alpha=32)
    yield "norm_softmax", None, losses.NormalizedSoftmaxLoss(classes, d, temperature=0.05)
    yield "soft_triple", None, losses.SoftTripleLoss(classes, d, centers_per_class=10, la=20, gamma=0.1, margin=0.01)
    yield "arcface", None, losses.ArcFaceLoss(classes, d, margin=28.6, scale=64)


def main():
    # One case per process (`reps name n`): a case that runs out of memory takes only itself down.
    reps, only_name, only_n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    torch.manual_seed(0)
    d = 512
    k = 5 if only_n == 80 else 10
    for name, miner, loss_fn in setups(only_n // k, d):
        for n in (80, 1000):
            if (name, n) != (only_name, only_n):
                continue
            x = torch.rand(n, d) - 0.5
            x = x / x.norm(dim=1, keepdim=True)
            labels = torch.arange(n) // k
            times = []
            for rep in range(reps + 3):
                emb = x.clone().requires_grad_(True)
                start = time.perf_counter()
                pairs = miner(emb, labels) if miner is not None else None
                value = loss_fn(emb, labels, pairs)
                value.backward()
                _ = emb.grad.numpy().copy()
                if rep >= 3:
                    times.append((time.perf_counter() - start) * 1e3)
            print(f"{name} {n} {d} {statistics.median(times):.3f}", flush=True)


if __name__ == "__main__":
    main()
