"""The lab report's own input pipeline: torchvision.datasets.FashionMNIST + ToTensor + DataLoader,
over the same verified files and the shared batch order, so its cost can be measured.
PyTorch-only (Keras has no counterpart), so this file has no mirror in keras_impl."""

from __future__ import annotations

import torch
import torchvision
from torchvision import transforms

from shared.atomic import atomic_write
from shared.data import cache_dir, idx_bytes


def torchvision_root(data) -> str:
    """Lay the verified arrays out as torchvision expects (<root>/FashionMNIST/raw/, uncompressed)."""
    root = cache_dir() / "torchvision" / data.sha256["train-images-idx3-ubyte"][:12]
    raw = root / "FashionMNIST" / "raw"
    for name, arr in (
        ("train-images-idx3-ubyte", data.train_images),
        ("train-labels-idx1-ubyte", data.train_labels),
        ("t10k-images-idx3-ubyte", data.test_images),
        ("t10k-labels-idx1-ubyte", data.test_labels),
    ):
        if not (raw / name).exists():
            atomic_write(raw / name, lambda f, a=arr: f.write(idx_bytes(a)))
    return str(root)


def torchvision_dataset(data, config):
    steps = [transforms.ToTensor()]  # uint8 HxW -> float32 1xHxW in [0, 1]
    if config.scaling == "standardize":
        mean, std = data.train_pixel_stats
        steps.append(transforms.Normalize((mean,), (std,)))
    steps.append(transforms.Lambda(lambda x: x.view(-1)))  # the report's view(-1, 784)
    return torchvision.datasets.FashionMNIST(
        torchvision_root(data), train=True, download=False, transform=transforms.Compose(steps)
    )


def loader(dataset, index_batches):
    """A DataLoader whose batch_sampler is the shared batch order for this epoch."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=[b.tolist() for b in index_batches], num_workers=0)
