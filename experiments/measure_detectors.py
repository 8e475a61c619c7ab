"""Faces found per photo and milliseconds per photo of every registered detector, on the Happy House test photos.

    python experiments/measure_detectors.py [--data-dir ../shared/data] [--output experiments/results/detectors.json]

Each detector runs on the photos as they are (64x64) and at the working size of `mtl.faces.detector`
(short side scaled up to MIN_SIDE); the first photo is a warm-up and is not timed.
"""

import argparse
import collections
import json
import time
from pathlib import Path

import h5py
import numpy as np

from mtl import faces


def measure(name: str, photos: np.ndarray) -> dict:
    detect = faces.detector(name)
    detect(photos[0])
    counts, seconds = [], []
    for photo in photos:
        start = time.perf_counter()
        counts.append(len(detect(photo)))
        seconds.append(time.perf_counter() - start)
    histogram = collections.Counter(counts)
    return {
        "photos": len(photos),
        "faces_per_photo": {str(k): histogram[k] for k in sorted(histogram)},
        "photos_with_exactly_one_face": histogram[1],
        "photos_with_no_face": histogram[0],
        "ms_per_photo_median": round(1000 * float(np.median(seconds)), 1),
        "ms_per_photo_mean": round(1000 * float(np.mean(seconds)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--output", default="experiments/results/detectors.json")
    parser.add_argument("--detectors", default=",".join(faces.DETECTORS.names()))
    args = parser.parse_args()
    with h5py.File(Path(args.data_dir) / "happy_house" / "test_happy.h5", "r") as file:
        photos = file["test_set_x"][:]
    results = {}
    for min_side in (1, faces.MIN_SIDE):
        faces.MIN_SIDE = min_side  # read by the detector wrapper at every call
        for name in args.detectors.split(","):
            results[f"{name}, short side scaled up to {min_side} px"] = measure(name, photos)
    print(json.dumps(results, indent=2))
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
