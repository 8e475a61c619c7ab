"""How the training crops frame a face, measured with the default detector, and the crop rule it implies.

    python experiments/measure_crops.py [--data-dir ../shared/data] [--per-class 150]

For a seeded sample of each training folder, every crop is padded by PAD of its size on each
side (a face that fills the frame is otherwise often missed), scaled up by the detector's
working size, and the most confident box is measured relative to the crop: width and height
fractions, centre, and the two numbers of the crop rule in `mtl.faces`:
- margin: side of a square crop with the training crop's area over the larger side of the box
  (the geometric mean of the crop's sides, since training resizes a crop to a square whatever its shape),
- shift_down: how far the crop's centre sits below the box's centre, in box heights.
Writes experiments/results/crops.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mtl import faces

PAD = 0.25
DATASETS = {"gender": "gender/Training", "emotion": "fer2013/train"}


def measure_crop(detect, path: Path) -> dict | None:
    with Image.open(path) as picture:
        crop = np.asarray(picture.convert("RGB"))
    height, width = crop.shape[:2]
    pad_y, pad_x = round(PAD * height), round(PAD * width)
    padded = np.pad(crop, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="edge")
    boxes = detect(padded)
    if not boxes:
        return None
    box = max(boxes, key=lambda b: b.score)
    x, y = box.x - pad_x, box.y - pad_y
    return {
        "width_fraction": box.w / width,
        "height_fraction": box.h / height,
        "centre_x": (x + box.w / 2) / width,
        "centre_y": (y + box.h / 2) / height,
        "margin": float(np.sqrt(width * height) / max(box.w, box.h)),
        "shift_down": (height / 2 - (y + box.h / 2)) / box.h,
    }


def summary(measurements: list[dict], total: int) -> dict:
    keys = measurements[0].keys()
    return {
        "crops": total,
        "face_found": len(measurements),
        **{key: {q: round(float(np.quantile([m[key] for m in measurements], p)), 3)
                 for q, p in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))} for key in keys},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="experiments/results/crops.json")
    args = parser.parse_args()
    detect = faces.detector(faces.DEFAULT_DETECTOR)
    rng = np.random.default_rng(args.seed)
    results = {"detector": faces.DEFAULT_DETECTOR, "pad": PAD, "per_class": args.per_class}
    for name, folder in DATASETS.items():
        paths = []
        for class_folder in sorted(p for p in (Path(args.data_dir) / folder).iterdir() if p.is_dir()):
            files = sorted(class_folder.iterdir())
            paths += [files[i] for i in rng.choice(len(files), args.per_class, replace=False)]
        found = [m for m in (measure_crop(detect, path) for path in paths) if m is not None]
        results[name] = summary(found, len(paths))
    margins = [results[name]["margin"]["median"] for name in DATASETS]
    shifts = [results[name]["shift_down"]["median"] for name in DATASETS]
    results["crop_rule"] = {"margin": round(float(np.mean(margins)), 2), "shift_down": round(float(np.mean(shifts)), 2)}
    print(json.dumps(results, indent=2))
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
