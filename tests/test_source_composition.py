"""experiments/source_composition.py: each class's faces per group of a source, from its labels alone."""

import importlib.util
from pathlib import Path

from conftest import write_image

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "source_composition.py"
spec = importlib.util.spec_from_file_location("source_composition", SCRIPT)
source_composition = importlib.util.module_from_spec(spec)
spec.loader.exec_module(source_composition)


def utkface_folder(root: Path) -> Path:
    """Six faces named as UTKFace names them (AGE_GENDER_RACE_DATETIME): the older ones mostly men."""
    faces = {"female": ["25_1_2_1", "64_1_0_2", "5_1_0_3"], "male": ["61_0_0_4", "70_0_2_5", "33_0_0_6"]}
    for gender, names in faces.items():
        for seed, name in enumerate(names):
            write_image(root / "utk" / gender / f"{name}.jpg", seed=seed)
    return root


def test_the_older_faces_being_mostly_men_shows_in_the_age_table(tmp_path, capsys):
    out = tmp_path / "composition.md"

    assert source_composition.main(["utkface:utk", "--data-dir", str(utkface_folder(tmp_path)), "--out", str(out)]) == 0

    text = out.read_text()
    assert text.strip() == capsys.readouterr().out.strip()
    assert "| 3-9 | 1 | 1 | 0 | 100.0% |" in text
    assert "| 60+ | 3 | 1 | 2 | 33.3% |" in text
    assert "| Asian | 2 | 1 | 1 | 50.0% |" in text and "| White | 4 | 2 | 2 | 50.0% |" in text
    # Age bands in the order of their ages, not of their text.
    assert text.index("| 3-9 |") < text.index("| 20-29 |") < text.index("| 60+ |")


def test_a_source_without_attributes_says_so_and_a_missing_one_is_one_sentence(tmp_path, capsys):
    for gender in ("female", "male"):
        write_image(tmp_path / "plain" / gender / "a.jpg")

    assert source_composition.main(["folder:plain", "--data-dir", str(tmp_path)]) == 0
    assert "carries no attributes" in capsys.readouterr().out

    assert source_composition.main(["utkface:nowhere", "--data-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
