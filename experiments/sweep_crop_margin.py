"""Happy House emotion accuracy of a trained run on detected faces, for crop margins around the measured one.

    python experiments/sweep_crop_margin.py RUN_DIR [--data-dir ../shared/data] [--output FILE.json]

A check of the crop rule chosen from the training crops' framing (experiments/measure_crops.py):
if the rule is right, the measured margin should score about as well as any other.
"""

import argparse
import json
from pathlib import Path


from mtl import faces
from mtl.data.sources import happy_house
from mtl.evaluate import predict_dataset
from mtl.models.build import load_inference_model
from mtl.tasks import EMOTION

MARGINS = (0.7, 0.8, faces.CROP_MARGIN, 1.0, 1.1, 1.25, 1.5, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--output")
    args = parser.parse_args()
    model = load_inference_model(Path(args.run_dir) / "model.keras")
    source = happy_house(Path(args.data_dir) / "happy_house" / "test_happy.h5")
    size = model.input_shape[1]

    def accuracy(examples):
        probabilities, labels, _ = predict_dataset(model, examples, 64)
        return round(float((probabilities[EMOTION].argmax(1) == labels[EMOTION]).mean()), 4)

    results = {"run": args.run_dir, "whole_photo": accuracy(source.dataset(size)), "detected": {}}
    for margin in MARGINS:
        examples, found_rate = faces.detected_faces(source, size, margin=margin)
        results["detected"][str(margin)] = {"accuracy": accuracy(examples), "face_found_rate": found_rate}
    print(json.dumps(results, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
