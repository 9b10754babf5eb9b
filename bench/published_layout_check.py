"""dml's pretrained backbones against the definitions their published weights are the state dicts
of, where no registry carries the weight files themselves:
- `bn-inception`: `BNInception` of PyPI's `pretrainedmodels` 0.7.4 (Cadene's), whose state dict
  is the Deep_Metric code's `bn_inception-52deb4733.pth`; saved as that file is: the legacy
  (non-zip) torch.save format, pickle protocol 2, no `num_batches_tracked`;
- `resnet18`, `resnet50`: torchvision's (PyPI `torchvision` 0.29.2, only its Python model code is
  used), saved in the zip format of torchvision's files, counters included.
Each network gets random weights, its batch-norm running statistics set to the batch statistics of
the test photos and then perturbed (so that deep stacks neither vanish nor explode), and its
ImageNet layer scaled so that logits spread by about 2. Then `dml weights inspect --backbone B`
must match every tensor, and `dml weights classify --backbone B` on 256 × 256 PNGs (dml's test
view: shorter side 256, so no resize, then the centre 224) must give the top-5 classes and
probabilities of the same network in PyTorch on the same pixels.

Usage: python published_layout_check.py DML_BIN OUT_DIR [BACKBONE ...]   (default: all three)
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


def network_input(rgb, backbone):
    """dml's test view of a 256 × 256 photo: the centre 224, normalised as the weights expect."""
    view = rgb[16:240, 16:240].astype(np.float32)
    if backbone == "bn-inception":  # Caffe: BGR, 0–255, minus the channel means
        view = view[:, :, ::-1] - np.array([104.0, 117.0, 128.0], np.float32)
    else:  # torchvision: RGB in [0, 1], ImageNet mean and std
        view = (view / 255.0 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1), dtype=np.float32))


def published_network(backbone):
    if backbone == "bn-inception":
        return bninception_module().BNInception(num_classes=1000), "last_linear"
    import torchvision.models

    return getattr(torchvision.models, backbone)(), "fc"


def check(dml, out, backbone):
    out = out / backbone
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    photos = []
    for i in range(3):
        rgb = photo(rng)
        path = out / f"photo{i}.png"
        write_png(path, rgb)
        photos.append((path, rgb))
    x = torch.stack([network_input(rgb, backbone) for _, rgb in photos])

    net, head = published_network(backbone)
    head = getattr(net, head)
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
        head.weight.mul_(scale)
        head.bias.mul_(scale)
    weights = out / f"{backbone}-random.pth"
    if backbone == "bn-inception":
        state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
        torch.save(state, weights, _use_new_zipfile_serialization=False, pickle_protocol=2)
    else:
        state = net.state_dict()
        torch.save(state, weights)
    print(f"{weights}: {len(state)} tensors")

    inspect = subprocess.run([dml, "weights", "inspect", "--backbone", backbone, str(weights)],
                             capture_output=True, text=True)
    print("\n".join(l for l in inspect.stdout.splitlines() if not re.match(r"^\s+\S+\s+\[", l)))
    if inspect.returncode != 0:
        sys.exit(f"dml weights inspect failed: {inspect.stderr}")

    classify = subprocess.run([dml, "weights", "classify", "--backbone", backbone, "--top", "5", str(weights)]
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
            prob = torch.softmax(net(network_input(rgb, backbone)[None]).double(), 1)[0].numpy()
        top = np.argsort(-prob, kind="stable")[:5]
        ours = dml_rows[str(path)]
        same &= [c for c, _ in ours] == top.tolist()
        worst = max(worst, max(abs(p - prob[c]) for c, p in ours))
        print(f"{path.name}: PyTorch {[(int(c), round(float(prob[c]), 3)) for c in top]}  dml {ours}")
    print(f"top-5 identical: {same}; largest probability difference {worst:.4f} (dml prints 3 decimals)")
    return same and worst <= 1e-3


if __name__ == "__main__":
    results = [check(sys.argv[1], Path(sys.argv[2]), b) for b in sys.argv[3:] or ["bn-inception", "resnet18", "resnet50"]]
    sys.exit(0 if all(results) else 1)
