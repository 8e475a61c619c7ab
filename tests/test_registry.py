"""The one registry shape every plug-in axis uses."""

import pytest

from mtl.errors import UserError
from mtl.registry import Registry


def test_a_registered_entry_is_found_by_name_and_listed_in_order():
    things = Registry("thing", "options.thing")

    @things.register("first")
    class First:
        pass

    @things.register("second")
    def second():
        return 2

    assert things.get("first") is First and things.get("second")() == 2
    assert things.names() == ["first", "second"] and "first" in things and len(things) == 2


def test_an_unknown_name_is_one_sentence_naming_the_field_the_names_and_the_closest():
    things = Registry("loss weighting", "options.loss_weighting")
    things.add("uncertainty", object)
    things.add("dwa", dict)
    with pytest.raises(UserError) as error:
        things.get("uncertainty_")
    assert str(error.value) == (
        "Unknown loss weighting (options.loss_weighting) 'uncertainty_'; expected one of: uncertainty, dwa; "
        "did you mean 'uncertainty'?"
    )


def test_another_entry_under_a_taken_name_is_refused_but_the_same_class_again_replaces_itself():
    things = Registry("backbone")

    class Net:
        pass

    things.add("net", Net)
    things.add("net", Net)  # a module imported twice registers the same class again
    with pytest.raises(UserError, match="taken by"):
        things.add("net", dict)


def test_the_names_known_before_tensorflow_starts_are_the_package_s_own_registrations():
    from mtl import approaches, builtin_names, faces
    from mtl.models import backbones

    own = lambda registry: [name for name, entry in registry.items() if entry.__module__.startswith("mtl.")]  # noqa: E731
    assert own(approaches.APPROACHES) == list(builtin_names.APPROACHES)
    assert own(backbones.BACKBONES) == list(builtin_names.BACKBONES)
    assert own(faces.DETECTORS) == list(builtin_names.DETECTORS) and builtin_names.DEFAULT_DETECTOR in faces.DETECTORS


def test_the_command_s_help_lists_the_package_s_own_names_from_one_place(capsys):
    from mtl import builtin_names
    from mtl.cli import build_parser

    def help_of(command: str) -> str:
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        return " ".join(capsys.readouterr().out.split())  # unwrapped

    assert f"{', '.join(builtin_names.APPROACHES)} or a registered plug-in" in help_of("train")
    assert f"{', '.join(builtin_names.BACKBONES)} or a plug-in's" in help_of("train")
    assert f"{', '.join(builtin_names.DETECTORS)} or a plug-in's (default: {builtin_names.DEFAULT_DETECTOR})" in help_of("predict")


def test_a_misspelt_approach_is_refused_before_tensorflow_is_imported():
    import os
    import subprocess
    import sys

    check = (
        "import sys; from mtl.cli import main; code = main(['train', 'multitsk']); "
        "print(code, 'tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env={**os.environ, "MTL_PLUGINS": ""})
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "did you mean 'multitask'?" in done.stderr
