"""Draw a small, seeded sample of the real datasets into ``mtl/sample_data``.

The sample has exactly the layout of the full data (see ``../shared/data/README.md``):

    gender/Training/{female,male}/      200 files per class
    gender/Validation/{female,male}/     60 files per class
    fer2013/train/{happy,sad}/          600 files per class
    fer2013/test/{happy,sad}/            80 files per class
    happy_house/test_happy.h5            40 images, 20 per label, same keys and dtypes
    utkface/train/{female,male}/        100 files per class (the second gender source)
    utkface/test/{female,male}/          60 files per class

These sizes let every approach of the quick start (``experiments/configs/quickstart.json``)
learn both tasks clearly above chance in a few minutes on two cores, within 10 MB on disk
(about 5 MB of files). FER2013 gets three times the gender faces: a 48x48 PNG is a third
of a gender JPEG, and happy-vs-sad is the harder task to learn.

Image files are copied byte for byte. For each class folder the files are listed, sorted
by name, and drawn without replacement with ``numpy.random.RandomState(seed).choice``; one
RandomState is used for all draws, in the order above, so the same seed and the same data
always give the same sample.

Run from anywhere (defaults are relative to the repository root):

    python experiments/make_sample.py --overwrite
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]

# (split folder, classes, files per class), drawn in this order.
FOLDERS = [
    ("gender/Training", ("female", "male"), 200),
    ("gender/Validation", ("female", "male"), 60),
    ("fer2013/train", ("happy", "sad"), 600),
    ("fer2013/test", ("happy", "sad"), 80),
]
HAPPY_HOUSE = "happy_house/test_happy.h5"
HAPPY_HOUSE_PER_LABEL = 20
HAPPY_HOUSE_KEYS = ("test_set_x", "test_set_y", "list_classes")
# Drawn after Happy House, so that adding them left every earlier draw of the sample as it was.
UTKFACE_FOLDERS = [
    ("utkface/train", ("female", "male"), 100),
    ("utkface/test", ("female", "male"), 60),
]
# Top-level entries of --out that this script owns (and replaces with --overwrite).
MANAGED = ("gender", "fer2013", "happy_house", "utkface")


class SampleError(Exception):
    """A problem to report in one sentence, without a traceback."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=REPO_ROOT / "../shared/data",
                   help="full datasets (default: ../shared/data from the repository root)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "mtl/sample_data",
                   help="where to write the sample (default: mtl/sample_data in the repository)")
    p.add_argument("--seed", type=int, default=0, help="seed of numpy.random.RandomState (default: 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the sample in a non-empty --out (other files there are kept)")
    return p.parse_args(argv)


def list_files(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise SampleError(f"missing folder {folder}")
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def draw(rng: np.random.RandomState, n_available: int, k: int, what: str) -> np.ndarray:
    if n_available < k:
        raise SampleError(f"{what} has {n_available} items, fewer than the {k} to sample")
    return np.sort(rng.choice(n_available, size=k, replace=False))


def check_out(data_dir: Path, out: Path, overwrite: bool) -> None:
    if not data_dir.is_dir():
        raise SampleError(f"data directory {data_dir} does not exist (pass --data-dir)")
    if out.exists() and not out.is_dir():
        raise SampleError(f"--out {out} exists and is not a directory")
    d, o = data_dir.resolve(), out.resolve()
    if o == d or d in o.parents:
        raise SampleError(f"--out {out} must not be inside the data directory {data_dir}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SampleError(f"{out} is not empty; pass --overwrite to replace the sample in it")


def make_sample(data_dir: Path, out: Path, seed: int) -> dict:
    rng = np.random.RandomState(seed)
    for name in MANAGED:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
        elif (out / name).exists():
            (out / name).unlink()

    counts = {}
    copy_folders(rng, data_dir, out, FOLDERS, counts)

    src = data_dir / HAPPY_HOUSE
    if not src.is_file():
        raise SampleError(f"missing file {src}")
    with h5py.File(src, "r") as f:
        missing = [key for key in HAPPY_HOUSE_KEYS if key not in f]
        if missing:
            raise SampleError(f"{src} lacks the key(s) {', '.join(missing)}")
        x, y, list_classes = (f[key][()] for key in HAPPY_HOUSE_KEYS)
    picks = []
    for label in np.unique(y):
        where = np.flatnonzero(y == label)
        picks.append(where[draw(rng, len(where), HAPPY_HOUSE_PER_LABEL, f"{src} label {label}")])
    idx = np.sort(np.concatenate(picks))  # keep the original order of the file
    dst = out / HAPPY_HOUSE
    dst.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(dst, "w") as f:
        f.create_dataset("test_set_x", data=x[idx], compression="gzip", compression_opts=9)
        f.create_dataset("test_set_y", data=y[idx])
        f.create_dataset("list_classes", data=list_classes)
    counts[HAPPY_HOUSE] = len(idx)
    copy_folders(rng, data_dir, out, UTKFACE_FOLDERS, counts)
    return counts


def copy_folders(rng: np.random.RandomState, data_dir: Path, out: Path, folders, counts: dict) -> None:
    """Copy a seeded draw of each class folder's files, in the order given, noting the counts."""
    for split, classes, k in folders:
        for cls in classes:
            src = data_dir / split / cls
            names = list_files(src)
            dst = out / split / cls
            dst.mkdir(parents=True, exist_ok=True)
            for i in draw(rng, len(names), k, str(src)):
                shutil.copyfile(src / names[i], dst / names[i])
            counts[f"{split}/{cls}"] = k


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_out(args.data_dir, args.out, args.overwrite)
        counts = make_sample(args.data_dir, args.out, args.seed)
    except SampleError as e:
        print(f"make_sample: {e}.", file=sys.stderr)
        return 2
    files = [p for p in args.out.rglob("*") if p.is_file()
             and p.relative_to(args.out).parts[0] in MANAGED]
    size = sum(p.stat().st_size for p in files)
    n_gender = sum(v for k, v in counts.items() if k.startswith("gender/"))
    n_fer = sum(v for k, v in counts.items() if k.startswith("fer2013/"))
    n_utk = sum(v for k, v in counts.items() if k.startswith("utkface/"))
    print(f"wrote {args.out} (seed {args.seed}): gender {n_gender} images, fer2013 {n_fer} images, "
          f"happy_house {counts[HAPPY_HOUSE]} images, utkface {n_utk} images; {len(files)} files, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
