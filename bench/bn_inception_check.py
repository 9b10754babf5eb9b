"""dml's BN-Inception against the definition the Deep_Metric code loads its ImageNet weights into:
`BNInception` of PyPI's `pretrainedmodels` 0.7.4 (Cadene's; `bn_inception-52deb4733.pth` is that
module's state dict). The real file is not carried by any package registry, so this builds the
module with random weights, sets its batch-norm running statistics to the batch statistics of
random inputs (so that the 30-odd layers neither vanish nor explode) and perturbs them, and saves
it as the real file is: the legacy (non-zip) torch.save format, pickle protocol 2, no
`num_batches_tracked`. Then `dml weights inspect --backbone bn-inception` must match every key,
and `dml weights classify --backbone bn-inception` on 256 × 256 PNGs (dml's test view: shorter
side 256, so no resize, then the centre 224; BGR, 0–255, minus 104/117/128) must give the top-5
classes and probabilities of the same network in PyTorch on the same pixels.

Usage: python bn_inception_check.py DML_BIN OUT_DIR
"""
import importlib.util
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import torch


def bninception_module():
    # The package's __init__ imports torchvision (not installed here); load the one file.
    root = Path(importlib.util.find_spec("pretrainedmodels").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("bninception", root / "models" / "bninception.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_png(path, rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def photo(rng):
    # Smooth colour fields plus noise: structure at several scales, every value in 0..255.
    y, x = np.mgrid[0:256, 0:256] / 256.0
    channels = []
    for _ in range(3):
        f = rng.uniform(1, 6, size=2)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        c = np.sin(2 * np.pi * f[0] * x + phase[0]) * np.cos(2 * np.pi * f[1] * y + phase[1])
        channels.append(127.5 + 90 * c + rng.normal(0, 20, size=c.shape))
    return np.clip(np.stack(channels, -1), 0, 255).round().astype(np.uint8)


def network_input(rgb):
    """dml's test view of a 256 × 256 photo: the centre 224, BGR, 0–255, minus 104/117/128."""
    view = rgb[16:240, 16:240, ::-1].astype(np.float32) - np.array([104.0, 117.0, 128.0], np.float32)
    return torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1)))


def main(dml, out):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    photos = []
    for i in range(3):
        rgb = photo(rng)
        path = out / f"photo{i}.png"
        write_png(path, rgb)
        photos.append((path, rgb))
    x = torch.stack([network_input(rgb) for _, rgb in photos])

    net = bninception_module().BNInception(num_classes=1000)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.momentum = None  # cumulative average: the running statistics become the batch's
        net.train()
        net(torch.cat([x, x.flip(3)]))
        for m in norms:
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.2)
            m.running_mean.add_(torch.randn_like(m.running_mean) * m.running_var.sqrt() * 0.1)
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25))
        net.eval()
        # Logits with a spread of about 2, so that the top-5 probabilities are far from 0 and 1.
        scale = 2.0 / net(x).std().item()
        net.last_linear.weight.mul_(scale)
        net.last_linear.bias.mul_(scale)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    weights = out / "bn_inception_random.pth"
    torch.save(state, weights, _use_new_zipfile_serialization=False, pickle_protocol=2)
    print(f"{weights}: {len(state)} tensors, legacy format")

    inspect = subprocess.run([dml, "weights", "inspect", "--backbone", "bn-inception", str(weights)],
                             capture_output=True, text=True)
    print("\n".join(l for l in inspect.stdout.splitlines() if not re.match(r"^\s+\S+\s+\[", l)))
    if inspect.returncode != 0:
        sys.exit(f"dml weights inspect failed: {inspect.stderr}")

    classify = subprocess.run([dml, "weights", "classify", "--backbone", "bn-inception", "--top", "5", str(weights)]
                              + [str(p) for p, _ in photos], capture_output=True, text=True)
    if classify.returncode != 0:
        sys.exit(f"dml weights classify failed: {classify.stderr}")
    dml_rows = {}
    for line in classify.stdout.splitlines():
        path, rest = line.rsplit(": ", 1)
        dml_rows[path] = [(int(c), float(p)) for c, p in re.findall(r"(\d+) \(([\d.]+)\)", rest)]

    worst, same = 0.0, True
    for path, rgb in photos:
        with torch.no_grad():
            prob = torch.softmax(net(network_input(rgb)[None]).double(), 1)[0].numpy()
        top = np.argsort(-prob, kind="stable")[:5]
        ours = dml_rows[str(path)]
        same &= [c for c, _ in ours] == top.tolist()
        worst = max(worst, max(abs(p - prob[c]) for c, p in ours))
        print(f"{path.name}: PyTorch {[(int(c), round(float(prob[c]), 3)) for c in top]}  dml {ours}")
    print(f"top-5 identical: {same}; largest probability difference {worst:.4f} (dml prints 3 decimals)")
    if not same or worst > 1e-3:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
