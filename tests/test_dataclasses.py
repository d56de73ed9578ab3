"""Every dataclass of the package takes exactly its fields, in order; the frozen ones stay frozen.

Some hot ones (FlowRecord, the TLS hellos, ...) write their ``__init__`` by hand: compiled with mypyc, the
one dataclasses generates runs interpreted and cost a fifth of the analysis. A field added to the class but
not to its ``__init__``, or two assignments swapped, would go unnoticed without this test.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import verifier


def _modules() -> list[ModuleType]:
    names = [info.name for info in pkgutil.walk_packages(verifier.__path__, "verifier.")]
    return [importlib.import_module(name) for name in sorted(names)]


DATACLASSES = sorted(
    {
        value
        for module in _modules()
        for value in vars(module).values()
        if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.__name__
    },
    key=lambda cls: f"{cls.__module__}.{cls.__qualname__}",
)


def _compiled(cls: type) -> bool:
    return not (inspect.getfile(importlib.import_module(cls.__module__))).endswith(".py")


# The hot ones, whose __init__ is written out (their speed, not their behaviour, depends on it).
HAND_WRITTEN = {
    "Classification", "ClientHello", "FlowRecord", "Identified", "RecordHeader", "ServerHello",
    "TlsDirectionState", "Unidentified", "_Conclusion", "_Hit",
}  # fmt: skip


def test_the_hot_dataclasses_keep_their_written_out_init() -> None:
    found = {cls.__qualname__: cls for cls in DATACLASSES if cls.__qualname__ in HAND_WRITTEN}
    assert found.keys() == HAND_WRITTEN
    for cls in found.values():
        if _compiled(cls):
            continue  # a compiled __init__ has no code object; the pure build checks the same source
        # dataclasses generates its __init__ from source text it compiles as "<string>"
        assert vars(cls)["__init__"].__code__.co_filename == inspect.getfile(cls), cls.__qualname__


@pytest.mark.parametrize("cls", DATACLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
def test_init_takes_the_fields_in_order(cls: type) -> None:
    fields = dataclasses.fields(cls)
    parameters = inspect.signature(cls).parameters
    assert list(parameters) == [field.name for field in fields]
    if _compiled(cls):
        return  # compiled, __init__ checks argument types: the pure build runs the rest on the same source
    for field in fields:
        default = parameters[field.name].default
        if field.default is not dataclasses.MISSING:
            assert default == field.default, field.name
        elif field.default_factory is dataclasses.MISSING:
            assert default is inspect.Parameter.empty, field.name
    # Distinct objects, so a value landing in the wrong field is seen.
    values = [object() for _ in fields]
    by_position = cls(*values)
    by_keyword = cls(**{field.name: value for field, value in zip(fields, values, strict=True)})
    for field, value in zip(fields, values, strict=True):
        assert getattr(by_position, field.name) is value
        assert getattr(by_keyword, field.name) is value
    if cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(by_position, fields[0].name, None)
