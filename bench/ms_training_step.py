"""The timed training step shared by the PyTorch step benchmarks: a network's forward pass,
pytorch-metric-learning MultiSimilarityMiner(0.1) + MultiSimilarityLoss(2, 40, 0.5), backward,
and an Adam step (lr 1e-3, weight decay 5e-4), on fresh random images each step, on the CPU or
a CUDA device (timed between synchronisations)."""
import time

import torch
from pytorch_metric_learning import losses, miners


def step_times_ms(net, image_shape, labels, steps, warmup, device="cpu"):
    """Wall time in ms of each of `steps` steps after `warmup` untimed ones."""
    device = torch.device(device)
    net, labels = net.to(device), labels.to(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=5e-4)
    loss_fn, miner = losses.MultiSimilarityLoss(2, 40, 0.5), miners.MultiSimilarityMiner(0.1)
    times = []
    for step in range(steps + warmup):
        images = torch.randn(*image_shape, device=device)
        sync()
        start = time.perf_counter()
        emb = net(images)
        loss = loss_fn(emb, labels, miner(emb, labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        sync()
        if step >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times
