"""faiss side of the retrieval benchmark (see run.sh): exact inner-product search with
IndexFlatIP, then Recall@K and MAP@R in NumPy, leave-one-out, as `dml metrics` computes them.

Usage: faiss_metrics.py E.npy L.npy K1,K2,...   Prints one JSON line with the wall time.
"""
import json
import sys
import time

import faiss
import numpy as np


def main():
    start = time.perf_counter()
    e = np.load(sys.argv[1]).astype(np.float32)
    labels = np.load(sys.argv[2])
    ks = [int(k) for k in sys.argv[3].split(",")]
    faiss.normalize_L2(e)
    counts = np.bincount(np.unique(labels, return_inverse=True)[1])
    r = counts[np.unique(labels, return_inverse=True)[1]] - 1
    depth = int(max(max(ks), r.max()))
    index = faiss.IndexFlatIP(e.shape[1])
    index.add(e)
    _, found = index.search(e, depth + 1)
    # Drop each query's own entry (wherever the search put it among ties).
    own = found == np.arange(len(e))[:, None]
    keep = ~own
    keep[own.sum(1) == 0, -1] = False
    neighbours = found[keep].reshape(len(e), depth)
    relevant = labels[neighbours] == labels[:, None]
    ok = r > 0
    out = {f"{k}": float(relevant[ok, :k].any(1).mean()) for k in ks}
    ranks = np.arange(1, depth + 1)
    precision = np.cumsum(relevant, axis=1) / ranks
    within = ranks[None, :] <= r[:, None]
    ap = (precision * relevant * within).sum(1)[ok] / r[ok]
    seconds = time.perf_counter() - start
    print(json.dumps({"recall_at_k": out, "map_at_r": float(ap.mean()), "queries": int(ok.sum()), "seconds": seconds}))


if __name__ == "__main__":
    main()
