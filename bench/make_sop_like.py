"""Random embeddings shaped like Stanford Online Products' test split: 60,502 × 512 float32,
11,316 classes of 2 to 12 images, classes noisy enough that retrieval is not trivial."""
import sys

import numpy as np

rng = np.random.default_rng(0)
n, classes, d = 60502, 11316, 512
sizes = np.full(classes, 2)
extra = rng.multinomial(n - sizes.sum(), np.ones(classes) / classes)
sizes = np.minimum(sizes + extra, 12)
while sizes.sum() < n:
    grow = rng.choice(np.where(sizes < 12)[0], n - sizes.sum(), replace=False)
    sizes[grow] += 1
labels = np.repeat(np.arange(classes), sizes)
rng.shuffle(labels)
centres = rng.standard_normal((classes, d)).astype(np.float32)
e = centres[labels] + 3.0 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(1.0)
np.save(sys.argv[1], e.astype(np.float32))
np.save(sys.argv[2], labels.astype(np.int64))
