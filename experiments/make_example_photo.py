"""Compose the README's example photo: two real faces of the bundled sample on a plain background.

    python experiments/make_example_photo.py     # writes experiments/example/photo.jpg
"""

from pathlib import Path

from PIL import Image

from mtl.data.pipeline import sample_data_dir

FACES = ("gender/Validation/female", "gender/Validation/male")
FACE_HEIGHT = 160  # the size of a face in an ordinary photo


def main() -> None:
    photo = Image.new("RGB", (520, 300), (182, 196, 210))
    for index, folder in enumerate(FACES):
        with Image.open(sorted((sample_data_dir() / folder).iterdir())[0]) as face:
            face = face.convert("RGB")
            face = face.resize((round(face.width * FACE_HEIGHT / face.height), FACE_HEIGHT), Image.Resampling.BICUBIC)
        photo.paste(face, (70 + index * 250, 70))
    output = Path(__file__).parent / "example" / "photo.jpg"
    photo.save(output, quality=92)
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
