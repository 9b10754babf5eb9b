"""Float64 reference of EfficientNet-Lite0's ImageNet logits, independent of dml and of PyTorch.

    python3 efficientnet_lite0.py WEIGHTS.pth INPUT.npy LOGITS.npy

WEIGHTS.pth: the PyTorch port's legacy (pre-1.6, non-zip) file, read here with Python's own
pickle module. INPUT.npy: [N, 3, H, W] network input, already normalised. LOGITS.npy: [N, 1000]
float64. Only NumPy is needed.
"""

import pickle
import struct
import sys

import numpy as np

ELEMENT = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "LongStorage": np.int64}


class _Storage:
    def __init__(self, kind, key):
        self.kind, self.key, self.data = kind, key, None


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self):
        data = self.storage.data
        item = data.itemsize
        return np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * item for s in self.stride]
        ).astype(np.float64)


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return lambda storage, offset, size, stride, *rest: _Tensor(storage, offset, size, stride)
        if module == "torch" and name in ELEMENT:
            return name
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        _, kind, key, _location, _size = pid[:5]
        return self.storages.setdefault(key, _Storage(kind, key))


def load_legacy(path):
    storages = {}
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        state = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            storage = storages[key]
            dtype = ELEMENT[storage.kind]
            storage.data = np.frombuffer(f.read(count * np.dtype(dtype).itemsize), dtype=dtype)
    return {name: t.array() for name, t in state.items() if isinstance(t, _Tensor)}


def same_pad(x, k, s):
    def amounts(n):
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return total // 2, total - total // 2

    h, w = x.shape[2:]
    return np.pad(x, ((0, 0), (0, 0), amounts(h), amounts(w)))


def conv(x, w, s, groups=1):
    k = w.shape[2]
    x = same_pad(x, k, s)
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    if groups == 1:
        return np.einsum("nchwij,ocij->nohw", windows, w, optimize=True)
    return np.einsum("nchwij,cij->nchw", windows, w[:, 0], optimize=True)


def bn(x, p, name, eps=1e-3):
    g, b = p[name + ".weight"], p[name + ".bias"]
    m, v = p[name + ".running_mean"], p[name + ".running_var"]
    scale = g / np.sqrt(v + eps)
    return x * scale[None, :, None, None] + (b - m * scale)[None, :, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def forward(p, x):
    x = relu6(bn(conv(x, p["_conv_stem.weight"], 2), p, "_bn0"))
    i, channels = 0, 32
    for repeats, k, stride, expand, out in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            pre, y = f"_blocks.{i}.", x
            if expand != 1:
                y = relu6(bn(conv(y, p[pre + "_expand_conv.weight"], 1), p, pre + "_bn0"))
            y = relu6(bn(conv(y, p[pre + "_depthwise_conv.weight"], s, groups=y.shape[1]), p, pre + "_bn1"))
            y = bn(conv(y, p[pre + "_project_conv.weight"], 1), p, pre + "_bn2")
            x = y + x if s == 1 and channels == out else y
            channels, i = out, i + 1
    x = relu6(bn(conv(x, p["_conv_head.weight"], 1), p, "_bn1"))
    pooled = x.mean(axis=(2, 3))
    return pooled @ p["_fc.weight"].T + p["_fc.bias"]


def main():
    weights, inputs, out = sys.argv[1:4]
    params = load_legacy(weights)
    x = np.load(inputs).astype(np.float64)
    np.save(out, np.concatenate([forward(params, x[n:n + 1]) for n in range(len(x))]))


if __name__ == "__main__":
    main()
