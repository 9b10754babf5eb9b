"""pytorch-metric-learning side of the loss benchmark (see run.sh).

Prints `name n d median_ms` for the case given as `reps name n`, forward + backward on the CPU, with the inputs of
src/bin/losses.rs: unit-length random embeddings, P×K labels (K = 5 for n = 80, 10 for n = 1000).
The closest pytorch-metric-learning setups:
  ms               MultiSimilarityMiner(epsilon=0.1) + MultiSimilarityLoss(2, 40, 0.5)
  lifted           LiftedStructureLoss(neg_margin=1, pos_margin=0)
  triplet_semihard TripletMarginMiner(margin=0.2, type_of_triplets="semihard") + TripletMarginLoss(0.2)
"""
import statistics
import sys
import time

import torch
from pytorch_metric_learning import losses, miners


def setups():
    yield "ms", miners.MultiSimilarityMiner(epsilon=0.1), losses.MultiSimilarityLoss(alpha=2, beta=40, base=0.5)
    yield "lifted", None, losses.LiftedStructureLoss(neg_margin=1, pos_margin=0)
    yield "triplet_semihard", miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"), losses.TripletMarginLoss(margin=0.2)


def main():
    # One case per process (`reps name n`): a case that runs out of memory takes only itself down.
    reps, only_name, only_n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    torch.manual_seed(0)
    d = 512
    for name, miner, loss_fn in setups():
        for n in (80, 1000):
            if (name, n) != (only_name, only_n):
                continue
            k = 5 if n == 80 else 10
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
