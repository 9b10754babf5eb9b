"""Gaussian clusters for the t-SNE tests and benchmark.

Usage: make_tsne_data.py OUT.npy N DIM CLUSTERS SEED — float32 [N, DIM], clusters of equal size
around centres drawn N(0, 5²) per coordinate, unit noise.
"""
import sys

import numpy as np

out, n, dim, clusters, seed = sys.argv[1], *(int(a) for a in sys.argv[2:6])
rng = np.random.default_rng(seed)
centres = rng.normal(0, 5, (clusters, dim))
labels = np.arange(n) % clusters
x = centres[labels] + rng.normal(0, 1, (n, dim))
np.save(out, x.astype(np.float32))
