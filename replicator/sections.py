"""Declared config sections: each key once, with its parser, default and the form it expects.

A `Section` subclass declares its keys as `Key` attributes. Building one from keyword values parses
every key, and collects every problem with the key path where it happened (a nested section's keys
below its own name): an unknown key, a missing one, a value its parser refused, or a rule across keys
(`Section.check`). They are raised together as `Problems`; the config loader turns the first into one
line. A built section is read-only. A `Secret` prints as a mask and gives its text only to
`get_secret_value()`.

Parsers take what YAML or an environment variable gives (text for every overridden key) and return
the typed value or raise ValueError with what was wrong: text becomes an integer, a number, a choice
or a path where the key expects one; a single text is a one-item list. Booleans are never numbers,
and a float or a boolean is never taken for text (quoting is asked for, so that a password `1.50`
does not silently become "1.5").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, overload

T = TypeVar("T")
E = TypeVar("E", bound=Enum)
S = TypeVar("S", bound="Section")

MASK = "**********"


class Problem:
    """One thing wrong: where (the key path), what kind (unknown, missing, value, rule), why, what was given."""

    __slots__ = ("kind", "loc", "message", "value")

    def __init__(self, loc: tuple[str, ...], kind: str, message: str = "", value: object = None) -> None:
        self.loc = loc
        self.kind = kind
        self.message = message
        self.value = value

    def under(self, name: str) -> Problem:
        return Problem((name, *self.loc), self.kind, self.message, self.value)


class Problems(Exception):  # noqa: N818 - a collection, caught only by the loader
    """Every problem found building a section (and the sections inside it)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


class Secret:
    """A password or key: prints as a mask; `get_secret_value()` is the only way to its text."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_NO_DEFAULT: Any = object()


class Key(Generic[T]):
    """One key of a section: how its value is parsed, its default, and the form it expects (`doc`)."""

    def __init__(self, parse: Callable[[object], T], doc: str = "", *, default: T = _NO_DEFAULT,
                 factory: Callable[[], T] | None = None) -> None:
        self.parse = parse
        self.doc = doc
        self.default = default
        self.factory = factory
        self.name = ""

    @property
    def section(self) -> type[Section] | None:
        """The section class of a nested section's key."""
        return getattr(self.parse, "section", None)

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT and self.factory is None

    def fallback(self) -> T:
        return self.factory() if self.factory is not None else self.default

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Key[T]: ...

    @overload
    def __get__(self, obj: object, owner: type) -> T: ...

    def __get__(self, obj: object | None, owner: type) -> Key[T] | T:
        if obj is None:
            return self
        return obj.__dict__[self.name]  # type: ignore[no-any-return]  # set by Section.__init__


class Section:
    """Keys declared as `Key` attributes; built from keyword values, validated, then read-only."""

    keys: ClassVar[dict[str, Key[Any]]] = {}

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        declared: dict[str, Key[Any]] = {}
        for klass in reversed(cls.__mro__):
            declared.update({name: v for name, v in vars(klass).items() if isinstance(v, Key)})
        cls.keys = declared

    def __init__(self, **values: object) -> None:
        problems = [Problem((name,), "unknown", value=value) for name, value in values.items()
                    if name not in self.keys]
        for name, key in self.keys.items():
            if name not in values:
                if key.required:
                    problems.append(Problem((name,), "missing"))
                else:
                    self.__dict__[name] = key.fallback()
                continue
            try:
                self.__dict__[name] = key.parse(values[name])
            except Problems as inner:
                problems.extend(p.under(name) for p in inner.problems)
            except ValueError as exc:
                problems.append(Problem((name,), "value", str(exc), values[name]))
        if not problems:
            try:
                self.check()
            except ValueError as exc:
                problems.append(Problem((), "rule", str(exc)))
        if problems:
            raise Problems(problems)

    def check(self) -> None:
        """Rules across keys; raise ValueError naming what is wrong."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only ({name})")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]  # holds lists and dicts

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self.keys)
        return f"{type(self).__name__}({shown})"

    def dump(self) -> dict[str, Any]:
        """Plain data (text, numbers, lists, mappings), secrets masked: for printing or serving."""
        return {name: _plain(self.__dict__[name]) for name in self.keys}


def _plain(value: object) -> Any:
    if isinstance(value, Section):
        return value.dump()
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- parsers -------------------------------------------------------------------------------------


def text(*, min_length: int = 0, pattern: str | None = None) -> Callable[[object], str]:
    matcher = re.compile(pattern) if pattern is not None else None

    def parse(value: object) -> str:
        found = _text(value)
        if len(found) < min_length:
            raise ValueError("must not be empty" if min_length == 1 else f"needs at least {min_length} characters")
        if matcher is not None and not matcher.fullmatch(found):  # ('$' alone would pass a final newline)
            raise ValueError(f"does not match {pattern}")
        return found

    return parse


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError("should be text (quote it in YAML)")


def integer(*, ge: int | None = None, le: int | None = None) -> Callable[[object], int]:
    def parse(value: object) -> int:
        found: int
        if isinstance(value, bool):
            raise ValueError("should be an integer, not true/false")
        if isinstance(value, int):
            found = value
        elif ((isinstance(value, float) and value.is_integer())
              or (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value))):
            found = int(value)
        else:
            raise ValueError("should be an integer")
        _bounds(found, ge=ge, le=le)
        return found

    return parse


def number(*, gt: float | None = None) -> Callable[[object], float]:
    def parse(value: object) -> float:
        if isinstance(value, bool):
            raise ValueError("should be a number, not true/false")
        try:
            found = float(value) if isinstance(value, int | float | str) else math.nan
        except ValueError:
            found = math.nan
        if not math.isfinite(found):
            raise ValueError("should be a finite number")
        if gt is not None and not found > gt:
            raise ValueError(f"should be greater than {gt:g}")
        return found

    return parse


def _bounds(found: int, *, ge: int | None, le: int | None) -> None:
    if ge is not None and found < ge:
        raise ValueError(f"should be at least {ge}")
    if le is not None and found > le:
        raise ValueError(f"should be at most {le}")


def choice(kind: type[E], aliases: Mapping[str, E] | None = None, what: str = "value") -> Callable[[object], E]:
    """One of an enum's values (case-insensitive), or one of its aliases."""
    names = dict(aliases or {})
    names.update({str(member.value).lower(): member for member in kind})

    def parse(value: object) -> E:
        if isinstance(value, kind):
            return value
        found = names.get(value.strip().lower()) if isinstance(value, str) else None
        if found is None:
            raise ValueError(f"unknown {what} {value!r}")
        return found

    return parse


def path(value: object) -> Path:
    found = _text(value)
    if not found:
        raise ValueError("must not be empty")
    return Path(found)


def secret(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    return Secret(_text(value))


def optional(parse: Callable[[object], T]) -> Callable[[object], T | None]:
    def parse_optional(value: object) -> T | None:
        return None if value is None else parse(value)

    return parse_optional


def texts(value: object) -> list[str]:
    """A list of text; a single text is a list of one."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError("should be a list of text")
    return [_text(item) for item in value]


def mapping(parse_value: Callable[[object], T]) -> Callable[[object], dict[str, T]]:
    def parse(value: object) -> dict[str, T]:
        if not isinstance(value, Mapping):
            raise ValueError("should be a mapping of key: value")
        found: dict[str, T] = {}
        problems: list[Problem] = []
        for name, item in value.items():
            try:
                found[str(name)] = parse_value(item)
            except ValueError as exc:
                problems.append(Problem((str(name),), "value", str(exc), item))
        if problems:
            raise Problems(problems)
        return found

    return parse


def scalar(value: object) -> str | int | float | bool:
    if isinstance(value, str | int | float | bool):
        return value
    raise ValueError("should be text, a number or true/false")


def scalar_text(value: object) -> str:
    """Text; a number or true/false given in YAML is taken as the text it was written as."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return _text(value)


class _Nested(Generic[S]):
    def __init__(self, section: type[S]) -> None:
        self.section = section

    def __call__(self, value: object) -> S:
        if isinstance(value, self.section):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("should be a section (a mapping of keys)")
        return self.section(**{str(name): item for name, item in value.items()})


def section(kind: type[S]) -> Callable[[object], S]:
    return _Nested(kind)
