"""Write the README's example datasets from packages installed here (no network).

    python scripts/example_data.py penguins artifacts/penguins.csv
    python scripts/example_data.py digits-png artifacts/digits-png [--scale 2]

``penguins``: the Palmer penguins CSV as the ``palmerpenguins`` package ships it
(344 penguins, species as text, two text columns, NA where a value is missing).
``digits-png``: scikit-learn's 1797 8x8 digits as grayscale PNG files in one
folder per class (``DIR/<digit>/<index>.png``), intensities 0..16 scaled to
0..255 and each pixel repeated ``scale`` times per axis.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import metadata
from pathlib import Path

import numpy as np


def penguins_csv(out: Path) -> Path:
    """Copy the penguins CSV that the ``palmerpenguins`` package ships to ``out``."""
    try:
        source = metadata.distribution("palmerpenguins").locate_file(
            "palmerpenguins/data/penguins.csv"
        )
    except metadata.PackageNotFoundError:
        raise SystemExit("error: install the dev extra (pip install -e '.[dev]')") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(str(source), out)
    return out


def digits_folder(out: Path, scale: int = 2, limit: int | None = None) -> Path:
    """scikit-learn's digits as PNG files ``out/<digit>/<index>.png`` (``limit``: the first N)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    count = len(images) if limit is None else limit
    for index in range(count):
        pixels = np.kron(images[index], np.ones((scale, scale), dtype=np.uint8))
        folder = out / str(bunch.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=("penguins", "digits-png"))
    parser.add_argument("out", type=Path, help="CSV file (penguins) or folder (digits-png)")
    parser.add_argument("--scale", type=int, default=2, help="digits-png: pixel repeat (2)")
    args = parser.parse_args(argv)
    if args.dataset == "penguins":
        path = penguins_csv(args.out)
    else:
        if args.scale < 1:
            parser.error("--scale must be at least 1")
        path = digits_folder(args.out, args.scale)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
