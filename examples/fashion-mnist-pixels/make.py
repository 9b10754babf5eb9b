"""Regenerates this example from the bundled Fashion-MNIST test set (engine/data/fashion-mnist).

Embeddings: 14x14 mean-pooled pixels (196-d float32) of the first 200 test images of each of the
zero-shot test classes 5-9 (sandal, shirt, sneaker, bag, ankle boot); labels: int64 class ids.
A raw-pixel baseline: what a trained embedding must beat. Standard library only.
"""
import gzip
import pathlib
import struct

root = pathlib.Path(__file__).resolve().parents[2] / "engine" / "data" / "fashion-mnist"
images = gzip.open(root / "t10k-images-idx3-ubyte.gz").read()
labels = gzip.open(root / "t10k-labels-idx1-ubyte.gz").read()
count = struct.unpack(">I", labels[4:8])[0]

per_class = 200
taken = {c: 0 for c in range(5, 10)}
rows, ys = [], []
for i in range(count):
    y = labels[8 + i]
    if y not in taken or taken[y] == per_class:
        continue
    taken[y] += 1
    img = images[16 + i * 784 : 16 + (i + 1) * 784]
    pooled = []
    for r in range(14):
        for c in range(14):
            s = img[(2 * r) * 28 + 2 * c] + img[(2 * r) * 28 + 2 * c + 1] + img[(2 * r + 1) * 28 + 2 * c] + img[(2 * r + 1) * 28 + 2 * c + 1]
            pooled.append(s / (4 * 255.0))
    rows.append(pooled)
    ys.append(y)


def npy(path, descr, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload)


here = pathlib.Path(__file__).resolve().parent
npy(here / "embeddings.npy", "<f4", "(%d, 196)" % len(rows), b"".join(struct.pack("<196f", *r) for r in rows))
npy(here / "labels.npy", "<i8", "(%d,)" % len(ys), struct.pack("<%dq" % len(ys), *ys))
print(len(rows), "embeddings")
