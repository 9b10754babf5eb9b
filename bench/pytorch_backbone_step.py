"""PyTorch side of the backbone training-step benchmark (see run.sh and src/bin/train_step.rs).

ResNet-18 or ResNet-50 (written out here, torchvision's layout: ResNet-50's stride on the 3×3
convolution), or BN-Inception (`BNInception` of PyPI's `pretrainedmodels` 0.7.4, only its model
file loaded), with global max pooling and Linear → 512, L2-normalised; batch of 224×224 images,
P × 8 labels; pytorch-metric-learning MultiSimilarityMiner(0.1) + MultiSimilarityLoss(2, 40, 0.5);
Adam lr 1e-3, weight decay 5e-4. Prints the median step time over `steps` steps after WARMUP
(default 2) warm-up steps, on DEVICE (default cpu; cuda for a GPU).
Usage: pytorch_backbone_step.py STEPS SIZE BATCH [resnet18|resnet50|bn-inception [DEVICE [WARMUP]]]
"""
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from ms_training_step import step_times_ms
from published_layout_check import bninception_module


def conv_bn(i, o, k, s):
    return nn.Sequential(nn.Conv2d(i, o, k, s, k // 2, bias=False), nn.BatchNorm2d(o))


class Basic(nn.Module):
    def __init__(self, i, o, s):
        super().__init__()
        self.a, self.b = conv_bn(i, o, 3, s), conv_bn(o, o, 3, 1)
        self.down = conv_bn(i, o, 1, s) if s != 1 or i != o else None

    def forward(self, x):
        short = x if self.down is None else self.down(x)
        return F.relu(self.b(F.relu(self.a(x))) + short)


class Bottleneck(nn.Module):
    def __init__(self, i, width, s):
        super().__init__()
        o = 4 * width
        self.a, self.b, self.c = conv_bn(i, width, 1, 1), conv_bn(width, width, 3, s), conv_bn(width, o, 1, 1)
        self.down = conv_bn(i, o, 1, s) if s != 1 or i != o else None

    def forward(self, x):
        short = x if self.down is None else self.down(x)
        return F.relu(self.c(F.relu(self.b(F.relu(self.a(x))))) + short)


class ResNet(nn.Module):
    def __init__(self, depth, dim=512):
        super().__init__()
        block, counts, expansion = {18: (Basic, [2, 2, 2, 2], 1), 50: (Bottleneck, [3, 4, 6, 3], 4)}[depth]
        self.stem = conv_bn(3, 64, 7, 2)
        blocks, c = [], 64
        for stage, (width, count) in enumerate(zip([64, 128, 256, 512], counts)):
            for b in range(count):
                blocks.append(block(c, width, 2 if b == 0 and stage > 0 else 1))
                c = width * expansion
        self.blocks = nn.Sequential(*blocks)
        self.embed = nn.Linear(c, dim)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1)
        x = self.blocks(x)
        return F.normalize(self.embed(x.amax(dim=(2, 3))))


class BnInception(nn.Module):
    def __init__(self, dim=512):
        super().__init__()
        self.net = bninception_module().BNInception(num_classes=1000)
        self.embed = nn.Linear(1024, dim)

    def forward(self, x):
        return F.normalize(self.embed(self.net.features(x).amax(dim=(2, 3))))


def backbone(name):
    if name == "bn-inception":
        return BnInception()
    return ResNet({"resnet18": 18, "resnet50": 50}[name])


def main():
    steps, size, batch = (int(a) for a in sys.argv[1:4])
    name = sys.argv[4] if len(sys.argv) > 4 else "resnet18"
    device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
    warmup = int(sys.argv[6]) if len(sys.argv) > 6 else 2
    torch.manual_seed(0)
    times = step_times_ms(backbone(name), (batch, 3, size, size), torch.arange(batch) // 8, steps, warmup, device)
    median = statistics.median(times)
    print(f"{name} {size}x{size} batch {batch} on {device} step: median {median:.1f} ms, min {min(times):.1f} ms, "
          f"{batch * 1e3 / median:.1f} images/s")


if __name__ == "__main__":
    main()
