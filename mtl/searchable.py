"""The words a plug-in declares what a search may vary with: `Hyperparameter`, and the shared ones approaches reuse.

It imports neither TensorFlow nor Keras Tuner, so an approach, a backbone or a user's plug-in module
can say what it searches without an import running up to the tuning layer; `mtl.tuning.space` turns
these declarations into a Keras Tuner search space.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from mtl.config import ExperimentConfig, set_dotted


@dataclass(frozen=True)
class Hyperparameter:
    """One searchable setting: its default spec, the config field it sets, and when it is active.

    A spec is a list (a choice), `{"min", "max"[, "step", "sampling"]}` (a range) or anything else
    (a fixed value). It may also be a function returning one, such as a registry's `names`: it is
    called when a search starts, so plug-ins imported after the declaration are among the choices.
    """

    spec: Any
    field: str | None = None  # dotted config field; None when `apply` builds the overrides
    categorical: bool = False  # choices only, never a range
    when: tuple[str, tuple] | None = None  # (parent, parent values) that make it meaningful
    apply: Callable[[ExperimentConfig, Any], dict] | None = None  # (base config, value) -> overrides

    def resolved(self) -> "Hyperparameter":
        """This hyperparameter with a spec given as a function replaced by what it returns now."""
        return dataclasses.replace(self, spec=list(self.spec())) if callable(self.spec) else self

    def overrides(self, base: ExperimentConfig, value) -> dict:
        if self.apply is not None:
            return self.apply(base, value)
        overrides: dict = {}
        set_dotted(overrides, self.field, value)
        return overrides

