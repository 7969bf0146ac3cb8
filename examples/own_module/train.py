"""Train ``resnet.py``'s module for a few epochs on scikit-learn's digits (no download),
upscaled to 32x32 RGB, and save what ``export-module`` needs.

    python examples/own_module/train.py --out artifacts/own

writes ``weights.pt`` (a state_dict), ``calib.npz`` (the held-out images as the model
takes them, pixels / 255 in [0, 1], with their labels ``y``), ``labels.txt``,
``request.json`` (a ``/predict`` body with the first held-out image) and
``sample.png`` (the same image as a file). The model expects torchvision-style
input: ``ToTensor()`` (pixels / 255) then ``Normalize(MEAN, STD)``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from resnet import build  # beside this file: Python puts the script's folder on sys.path
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet Normalize constants
STD = (0.229, 0.224, 0.225)
TINT = np.array([1.0, 0.8, 0.6])  # per-channel gain, so the three channels differ


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """Digits as uint8 RGB images (N, 3, 32, 32) and their labels."""
    digits = load_digits()
    gray = digits.images / 16.0  # (N, 8, 8) in [0, 1]
    big = gray.repeat(4, axis=1).repeat(4, axis=2)  # nearest-neighbour upscale to 32x32
    rgb = big[:, None, :, :] * TINT[None, :, None, None]
    return np.round(rgb * 255).astype(np.uint8), digits.target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    images, labels = digit_images()
    train, test = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=args.seed
    )
    pixels = images.astype(np.float32) / 255  # ToTensor()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(pixels) - mean) / std  # Normalize(MEAN, STD)
    y = torch.from_numpy(labels).long()

    model = build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    steps = args.epochs * -(-len(train) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.from_numpy(np.random.default_rng(args.seed + epoch).permutation(train))
        for batch in order.split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
        print(f"epoch {epoch + 1}: held-out accuracy {accuracy:.2%}")
    print(f"trained in {time.perf_counter() - start:.1f} s")

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "weights.pt")
    np.savez(args.out / "calib.npz", X=pixels[test], y=labels[test])
    (args.out / "labels.txt").write_text("".join(f"{d}\n" for d in range(10)))
    (args.out / "request.json").write_text(json.dumps({"image": pixels[test[0]].tolist()}))
    from PIL import Image

    Image.fromarray(images[test[0]].transpose(1, 2, 0), "RGB").save(args.out / "sample.png")
    print(
        f"wrote weights.pt, calib.npz ({len(test)} images), labels.txt, request.json and "
        f"sample.png to {args.out}"
    )


if __name__ == "__main__":
    main()
