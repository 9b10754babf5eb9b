"""openTSNE reference for `dml project --method tsne` (see bench/RESULTS.md).

Usage: opentsne_reference.py EMBEDDINGS.npy [MAP.npy] [--defaults]
Runs openTSNE 1.0.2 with the settings dml uses: perplexity 30, exact 90 nearest neighbours,
Barnes-Hut gradients (theta 0.5), PCA initialisation, 250 iterations of early exaggeration 12
then 500 plain ones, openTSNE's automatic learning rate. Prints wall time and the final KL
divergence; with MAP.npy also the 10-NN preservation of openTSNE's map and of that one. With
--defaults, openTSNE's own defaults instead (approximate neighbours, FFT-interpolated gradients).
"""
import sys
import time

import numpy as np
from openTSNE import TSNE


def knn(x, k):
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * x @ x.T
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1)[:, :k]


def preservation(x, y, k=10):
    a, b = knn(x.astype(np.float64), k), knn(y.astype(np.float64), k)
    return np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(x))])


def main():
    args = [a for a in sys.argv[1:] if a != "--defaults"]
    x = np.load(args[0]).astype(np.float64)
    start = time.perf_counter()
    if "--defaults" in sys.argv:
        tsne = TSNE(n_jobs=2, random_state=0)
    else:
        tsne = TSNE(perplexity=30, neighbors="exact", negative_gradient_method="bh", theta=0.5,
                    initialization="pca", early_exaggeration_iter=250, early_exaggeration=12, n_iter=500,
                    n_jobs=2, random_state=0, verbose=False)
    emb = tsne.fit(x)
    seconds = time.perf_counter() - start
    print(f"openTSNE: n {len(x)}, {seconds:.1f} s, KL {emb.kl_divergence:.4f}, 10-NN preservation {preservation(x, np.asarray(emb)):.3f}")
    if len(args) > 1:
        other = np.load(args[1])
        print(f"{args[1]}: 10-NN preservation {preservation(x, other):.3f}")


if __name__ == "__main__":
    main()
