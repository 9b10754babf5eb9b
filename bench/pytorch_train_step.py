"""PyTorch side of the training-step benchmark (see run.sh and src/bin/train_step.rs).

The default job's small CNN (five 3×3 conv + BN + ReLU, two 2×2 max pools, global max pool,
Linear 128→64, L2 normalisation), batch 80 of 28×28 images (P = 5, K = 16), pytorch-metric-learning
MultiSimilarityMiner(0.1) + MultiSimilarityLoss(2, 40, 0.5), Adam lr 1e-3, weight decay 5e-4.
Prints the median step time in ms over STEPS steps after WARMUP (default 3) warm-up steps, on
DEVICE (default cpu; cuda for a GPU).
Usage: pytorch_train_step.py [STEPS [DEVICE [WARMUP]]]
"""
import statistics
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from ms_training_step import step_times_ms


def block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([block(1, 32), block(32, 32), block(32, 64), block(64, 64), block(64, 128)])
        self.embed = nn.Linear(128, 64)

    def forward(self, x):
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in (1, 3):
                x = F.max_pool2d(x, 2)
        return F.normalize(self.embed(x.amax(dim=(2, 3))))


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    device = sys.argv[2] if len(sys.argv) > 2 else "cpu"
    warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.manual_seed(0)
    times = step_times_ms(SmallCnn(), (80, 1, 28, 28), torch.arange(80) // 16, steps, warmup, device)
    print(f"small_cnn on {device} step: median {statistics.median(times):.1f} ms, min {min(times):.1f} ms")


if __name__ == "__main__":
    main()
