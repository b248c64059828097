"""Frozen records written out by hand: what ``@dataclass(frozen=True, slots=True)`` would make,
without importing the dataclasses module or generating code when the engine is imported.

`plr eval` imports the engine on every run (benchmarks/bench_cli.py): the dataclasses module (and
the ``inspect`` it pulls in) plus the code each decorator generates and ``exec``s cost more than
the rest of the engine. A record class lists its fields in ``__slots__`` (in ``__init__`` order)
and writes its ``__init__``; ``Record`` gives it, as a frozen slotted dataclass has them,
``__eq__`` and ``__hash__`` over the compared fields, ``__repr__`` over the shown ones,
``__match_args__``, refusal to assign or delete a field (``dataclasses.FrozenInstanceError``),
pickling and copying. Public records (``Decision``, ``TraceStep``, ``Charge``) also answer the
dataclasses API (``dataclasses.fields``, ``replace``, ``asdict``, ``is_dataclass``): their
``__dataclass_fields__`` is built by the dataclasses module the first time something asks.
tests/test_engine_records.py holds each record to the dataclass it stands for.
"""

from __future__ import annotations

from operator import attrgetter
from reprlib import recursive_repr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Record", "dataclass_twin"]

_set = object.__setattr__


def _frozen(message: str) -> Exception:
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(message)


class _DataclassFields:
    """``__dataclass_fields__`` / ``__dataclass_params__`` of a public record, made on first
    access from its dataclass twin and then stored on the class in place of this descriptor."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type) -> Any:
        twin = dataclass_twin(owner)
        for attr in ("__dataclass_fields__", "__dataclass_params__"):
            type.__setattr__(owner, attr, twin.__dict__[attr])
        return owner.__dict__[self.name]


class Record:
    """Base of a frozen record; subclasses set ``__slots__`` and ``__init__`` (through ``_set``).

    Class keywords: ``compare`` (the fields ``==`` and ``hash`` use; default all), ``show``
    (those ``repr`` shows; default all), ``dataclass`` (answer the dataclasses API)."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _compared: tuple[str, ...] = ()
    _shown: tuple[str, ...] = ()

    def __init_subclass__(
        cls, compare: tuple[str, ...] | None = None, show: tuple[str, ...] | None = None, dataclass: bool = False
    ) -> None:
        fields = tuple(cls.__dict__["__slots__"])
        cls._fields = fields
        cls._compared = fields if compare is None else compare
        cls._shown = fields if show is None else show
        cls.__match_args__ = fields
        key = attrgetter(*cls._compared)  # a tuple of the values, as a dataclass compares them
        cls._key = staticmethod(key if len(cls._compared) > 1 else lambda self: (key(self),))
        if dataclass:
            for attr in ("__dataclass_fields__", "__dataclass_params__"):
                d = _DataclassFields()
                d.__set_name__(cls, attr)
                type.__setattr__(cls, attr, d)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._key(self) == self._key(other)  # type: ignore[attr-defined,no-any-return]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._key(self))  # type: ignore[attr-defined]

    @recursive_repr()
    def __repr__(self) -> str:
        return f"{self.__class__.__qualname__}(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._shown) + ")"

    # A frozen dataclass refuses any assignment to an instance of its own class (records are
    # not subclassed), naming the attribute as a field.
    def __setattr__(self, name: str, value: object) -> None:
        raise _frozen(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise _frozen(f"cannot delete field {name!r}")

    def __getstate__(self) -> list[Any]:
        return [getattr(self, f) for f in self._fields]

    def __setstate__(self, state: list[Any]) -> None:
        for f, value in zip(self._fields, state):
            _set(self, f, value)

    def _replace(self, **changes: Any) -> Any:
        """``dataclasses.replace(self, **changes)``."""
        for f in self._fields:
            if f not in changes:
                changes[f] = getattr(self, f)
        return self.__class__(**changes)


def dataclass_twin(cls: type) -> type:
    """The ``@dataclass(frozen=True, slots=True)`` that ``cls`` (a ``Record``) is written to
    behave as: same name, fields, defaults, compared and shown fields."""
    import dataclasses

    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    defaults = cls.__init__.__defaults__ or ()  # type: ignore[misc]
    first_default = len(fields) - len(defaults)
    annotations: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        annotations.update(klass.__dict__.get("__annotations__", {}))
    ns: dict[str, Any] = {
        "__annotations__": {f: annotations.get(f, "Any") for f in fields},
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    for i, f in enumerate(fields):
        compare, shown = f in cls._compared, f in cls._shown  # type: ignore[attr-defined]
        if i >= first_default:
            ns[f] = dataclasses.field(default=defaults[i - first_default], compare=compare, repr=shown)
        elif not (compare and shown):
            ns[f] = dataclasses.field(compare=compare, repr=shown)
    return dataclasses.dataclass(frozen=True, slots=True)(type(cls.__name__, (), ns))
