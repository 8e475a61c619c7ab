"""One registry shape for every plug-in axis: approaches, backbones, loss weightings, label sources,
data sources, detectors and group-robust methods.

A plug-in is registered under a name with `@REGISTRY.register("name")` (timm's `@register_model`
manner); configs, `compare` variants and search spaces then select it by that name, and nothing
else in the code branches on it. This module imports nothing heavy, so a command can check a
name before TensorFlow loads.
"""

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from mtl.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plug-ins of one axis, in registration order.

    `what` names the axis in messages ("approach", "loss weighting"); `field` is the config field
    that selects it, so an unknown name's sentence says where to change it.
    """

    def __init__(self, what: str, field: str | None = None):
        self.what = what
        self.field = field
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make `entry` selectable as `name`.

        The same class registered again (its module imported twice, as a test runner or a plug-in
        named twice may do) replaces itself; another entry under a taken name is refused.
        """

        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        if not isinstance(name, str) or not name:
            raise UserError(f"A {self.what} must be registered under a non-empty name, got {name!r}.")
        taken = self._entries.get(name)
        if taken is not None and _qualified_name(taken) != _qualified_name(entry):
            raise UserError(
                f"The {self.what} name '{name}' is taken by {_qualified_name(taken)}; "
                f"register {_qualified_name(entry)} under another name."
            )
        self._entries[name] = entry

    def remove(self, name: str) -> None:
        """Forget `name`: for a test that registers an entry for a while, so others never see it."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry registered as `name`, or a UserError listing the names (with the closest one)."""
        if name not in self._entries:
            raise UserError(self.unknown(name))
        return self._entries[name]

    def unknown(self, name) -> str:
        """The one sentence for an unknown name: the names there are, and the likeliest one meant."""
        where = f" ({self.field})" if self.field else ""
        return f"Unknown {self.what}{where} '{name}'; expected one of: {', '.join(self.names())}{did_you_mean(name, self.names())}"

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _qualified_name(entry) -> str:
    kind = entry if isinstance(entry, type) or callable(entry) else type(entry)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


def did_you_mean(name, names) -> str:
    """The end of a sentence refusing `name`: "; did you mean 'closest'?" where one of `names` is close, else "."."""
    closest = difflib.get_close_matches(str(name), list(names), n=1)
    return f"; did you mean '{closest[0]}'?" if closest else "."
