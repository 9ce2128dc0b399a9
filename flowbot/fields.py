"""What the arguments of pipeline objects must be, declared once and checked where the user wrote them.

Every public constructor of the model declares the kind of each argument with :func:`checked`::

    class Worker:
        @checked(name=NAME, secret=TEXT, max_builds=optional(whole(minimum=1)))
        def __init__(self, name, secret="", *, max_builds=None): ...

A value of the wrong kind is a :class:`~flowbot.errors.ConfigError` at the file and line of that
argument, naming the object, the field and what it must be (``Worker 'w1': max_builds must be a
whole number of at least 1 or None, not '2' (str)``), so ``flowbot checkconfig`` finds it before a
build does. Arguments left out keep their defaults, unchecked. A check that needs several arguments
at once (a default above the maximum) is written in the constructor with :func:`refuse`.

A kind is a :class:`Kind`: a phrase saying what it takes and a test; the ones here compose
(:func:`optional`, :func:`either`, :func:`list_of`, :func:`mapping`), and lists come back as lists,
so a constructor may take any iterable and read it once.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from difflib import get_close_matches
from typing import Any, TypeVar

from .errors import ArgumentError, ConfigErrors
from .location import Location, caller

F = TypeVar("F", bound=Callable[..., None])


class Mismatch(Exception):
    """A value (or a part of it, at ``path``) that is not of the kind it must be."""

    def __init__(self, expected: str, value: Any, path: str = ""):
        super().__init__(expected)
        self.expected, self.value, self.path = expected, value, path


def _alternatives(phrases: list[str]) -> str:
    """``"a, b or c"``: alternatives that are themselves alternatives are listed one by one."""
    each = [alternative for phrase in phrases for alternative in phrase.split(" or ")]
    return each[0] if len(each) == 1 else ", ".join(each[:-1]) + " or " + each[-1]


class Kind:
    """A kind of value: what it takes, in words, and a test.

    Args:
        expected: a phrase that completes "must be ...": ``"a whole number of at least 1"``.
        test: whether a value is of this kind.
        plural: the phrase for several of them (``list_of`` says "a list of strings").
    """

    def __init__(self, expected: str, test: Callable[[Any], bool], plural: str | None = None):
        self.expected = expected
        self.test = test
        self.plural = plural or f"{expected.removeprefix('a ').removeprefix('an ')}s"

    def check(self, value: Any) -> Any:
        """The value (lists made lists) if it is of this kind.

        Raises:
            Mismatch: it is not.
        """
        if not self.test(value):
            raise Mismatch(self.expected, value)
        return value

    def __or__(self, other: Kind) -> Kind:
        return either(self, other)

    def __repr__(self) -> str:
        return f"Kind({self.expected!r})"


class _Either(Kind):
    def __init__(self, kinds: tuple[Kind, ...]):
        super().__init__(_alternatives([k.expected for k in kinds]), lambda value: False)
        self.kinds = kinds

    def check(self, value: Any) -> Any:
        inner: Mismatch | None = None  # a list or a dict whose part is wrong says which part
        for kind in self.kinds:
            try:
                return kind.check(value)
            except Mismatch as exc:
                inner = inner or (exc if exc.path else None)
        raise inner or Mismatch(self.expected, value)


def either(*kinds: Kind) -> Kind:
    """A value of any of ``kinds`` (the first that takes it)."""
    return _Either(kinds)


def optional(kind: Kind) -> Kind:
    """``kind``, or None."""
    return either(kind, Kind("None", lambda value: value is None))


class _ListOf(Kind):
    def __init__(self, item: Kind, expected: str | None, single: bool):
        super().__init__(expected or f"a list of {item.plural}", lambda value: False)
        self.item, self.single = item, single

    def check(self, value: Any) -> Any:
        if self.single and isinstance(value, str):
            value = [value]
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
            raise Mismatch(self.expected, value)
        items = list(value)
        for index, item in enumerate(items):
            try:
                items[index] = self.item.check(item)
            except Mismatch as exc:
                raise Mismatch(exc.expected, exc.value, f"[{index}]{exc.path}") from None
        return items


def list_of(item: Kind, expected: str | None = None, *, single: bool = False) -> Kind:
    """A list (any iterable but a string or a mapping) of ``item``; with ``single``, one string
    stands for a list of it. Comes back as a list."""
    return _ListOf(item, expected, single)


class _Mapping(Kind):
    def __init__(self, key: Kind, value: Kind, expected: str | None):
        super().__init__(expected or f"a dict of {key.plural} to {value.plural}", lambda value: False)
        self.key, self.value = key, value

    def check(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise Mismatch(self.expected, value)
        for key, item in value.items():
            if not self.key.test(key):
                raise Mismatch(self.key.expected, key, " key")
            try:
                self.value.check(item)
            except Mismatch as exc:
                raise Mismatch(exc.expected, exc.value, f"[{key!r}]{exc.path}") from None
        return value


class _Named(Kind):
    def __init__(self, kind: Kind, expected: str):
        super().__init__(expected, kind.test)
        self.kind = kind

    def check(self, value: Any) -> Any:
        try:
            return self.kind.check(value)
        except Mismatch as exc:
            raise (exc if exc.path else Mismatch(self.expected, value)) from None


def named(kind: Kind, expected: str) -> Kind:
    """``kind``, said as ``expected`` (``named(whole(minimum=0, maximum=0o7777), "a file mode")``)."""
    return _Named(kind, expected)


def mapping(key: Kind, value: Kind, expected: str | None = None) -> Kind:
    """A dict (any mapping) from ``key`` to ``value``."""
    return _Mapping(key, value, expected)


def whole(*, minimum: int | None = None, maximum: int | None = None) -> Kind:
    """A whole number (not a bool), within the bounds given."""
    bounds = [f"at least {minimum}"] if minimum is not None else []
    bounds += [f"at most {maximum}"] if maximum is not None else []
    return Kind(
        " ".join(["a whole number", *(["of", " and ".join(bounds)] if bounds else [])]),
        lambda value: (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (minimum is None or value >= minimum)
            and (maximum is None or value <= maximum)
        ),
        plural="whole numbers",
    )


def number(*, above: float | None = None, minimum: float | None = None, unit: str = "") -> Kind:
    """A number (int or float, not a bool) above ``above`` or at least ``minimum``; ``unit`` names
    what it counts (``"seconds"``)."""
    what = f"a number of {unit}" if unit else "a number"
    bound = f" above {above:g}" if above is not None else f" of at least {minimum:g}" if minimum is not None else ""
    return Kind(
        what + bound,
        lambda value: (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and value == value  # not NaN
            and (above is None or value > above)
            and (minimum is None or value >= minimum)
        ),
    )


def one_of(*choices: Any) -> Kind:
    """One of ``choices`` exactly."""
    return Kind(_alternatives([repr(c) for c in choices]), lambda value: any(value == c for c in choices))


def instance(cls: type | tuple[type, ...], expected: str) -> Kind:
    """An instance of ``cls`` (not the class itself)."""
    return Kind(expected, lambda value: isinstance(value, cls) and not isinstance(value, type))


def _compiles(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        re.compile(value)
    except re.error:
        return False
    return True


def _is_renderable(value: Any) -> bool:
    from .properties import Renderable  # here: properties declares its own fields with this module

    return isinstance(value, Renderable) and not isinstance(value, type)


#: Any value at all.
ANYTHING = Kind("anything", lambda value: True)
#: Text.
TEXT = Kind("a string", lambda value: isinstance(value, str), plural="strings")
#: Text with something in it (a secret, a token).
FILLED_TEXT = Kind(
    "a non-empty string", lambda value: isinstance(value, str) and bool(value.strip()), plural="non-empty strings"
)
#: A name that appears in URLs and views: text, not empty, without '/'.
NAME = Kind(
    "a non-empty string without '/'",
    lambda value: isinstance(value, str) and bool(value.strip()) and "/" not in value,
    plural="names",
)
#: True or False (not 0, 1 or "yes").
FLAG = Kind("True or False", lambda value: isinstance(value, bool), plural="True or False")
#: Something to call.
FUNCTION = Kind("a function", callable, plural="functions")
#: A renderable value (``Interpolate``, ``Property``, a ``@renderer``), resolved for each build.
RENDERABLE = Kind("a renderable (Interpolate, Property...)", _is_renderable, plural="renderables")
#: Text, or a renderable that makes text for each build.
RENDERED_TEXT = either(TEXT, RENDERABLE)
#: A regular expression (as text) that compiles.
REGEX = Kind("a regular expression", _compiles, plural="regular expressions")
#: A file's path: text or a ``pathlib.Path``.
PATH = Kind("a path", lambda value: isinstance(value, (str, os.PathLike)), plural="paths")
#: A process's exit code (negative: the signal that killed it).
EXIT_CODE = named(whole(minimum=-255, maximum=255), "an exit code (-255 to 255)")
#: A number of seconds above 0 (timeouts, intervals).
SECONDS = number(above=0, unit="seconds")
#: A size in bytes, above 0 (a log's limit).
BYTES = named(whole(minimum=1), "a whole number of bytes above 0")
#: Environment variables for a command: names to values (None unsets one).
ENV = optional(mapping(TEXT, ANYTHING, "a dict of variable names to values"))
#: Build properties: names to values.
PROPERTIES = optional(mapping(TEXT, ANYTHING, "a dict of property names to values"))


# -- checking ----------------------------------------------------------------------------------------


def checked(**kinds: Kind) -> Callable[[F], F]:
    """Check the arguments of the ``__init__`` it decorates against ``kinds`` before it runs.

    It also sets ``self.defined_at`` (where the object was made) first, so the constructor's own
    checks (:func:`refuse`) can place their errors too.

    Raises:
        ArgumentError: an argument of the wrong kind, at its own line (ConfigErrors: several), or a
            call that names an argument the class does not have, or leaves out one it needs.
    """

    def decorate(init: F) -> F:
        parameters = list(inspect.signature(init).parameters.values())[1:]  # after self
        strangers = set(kinds) - {p.name for p in parameters}
        if strangers:
            raise TypeError(f"{init.__qualname__} has no argument(s) {sorted(strangers)}")
        # Where each argument is among the positional ones (a constructor is called often: no bind()).
        positions = {
            p.name: n for n, p in enumerate(parameters) if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        }

        @functools.wraps(init)
        def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
            if getattr(self, "defined_at", None) is None:
                self.defined_at = caller(self)
            given = dict(zip(positions, args, strict=False)) | kwargs
            errors = []
            for name, kind in kinds.items():
                if name not in given:
                    continue  # left to its default
                try:
                    value = kind.check(given[name])
                except Mismatch as exc:
                    errors.append(_error(self, name, given, exc))
                    continue
                if name in kwargs:
                    kwargs[name] = value
                else:
                    args = (*args[: positions[name]], value, *args[positions[name] + 1 :])
            if errors:
                raise errors[0] if len(errors) == 1 else ConfigErrors(errors)
            try:
                init(self, *args, **kwargs)
            except TypeError as exc:
                if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
                    raise _call_error(self, exc) from None  # the call did not fit: nothing of init ran
                raise

        return checked_init  # type: ignore[return-value]

    return decorate


def refuse(obj: Any, name: str | None, problem: str) -> ArgumentError:
    """An error about ``obj`` (about its argument ``name``, when given), at the line that wrote it;
    ``raise refuse(self, "default", "...")``."""
    return ArgumentError.at(f"{_title(obj)}: {problem}", where(obj, name))


def rendered(obj: Any, name: str, value: Any, kind: Kind) -> Any:
    """``value``, rendered for a build from ``obj``'s argument ``name``, if it is of ``kind``.

    Raises:
        ArgumentError: a renderable made a value of another kind (a build ends as EXCEPTION then,
            at the line that wrote the argument).
    """
    try:
        return kind.check(value)
    except Mismatch as exc:
        problem = f"{name}{exc.path} was rendered as {show(exc.value)}; it must be {exc.expected}"
        raise refuse(obj, name, problem) from None


def where(obj: Any, name: str | None = None) -> Location | None:
    """Where ``obj`` was made, or where that call wrote its argument ``name``."""
    location = getattr(obj, "defined_at", None)
    if location is None or name is None:
        return location
    return location.argument(name, _position(type(obj), name))


def show(value: Any) -> str:
    """A value as an error shows it: its repr (shortened) and its type."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _error(obj: Any, name: str, arguments: Mapping[str, Any], exc: Mismatch) -> ArgumentError:
    label = arguments.get("name")
    title = f"{type(obj).__name__} {label!r}" if isinstance(label, str) and label and name != "name" else _title(obj)
    problem = f"{title}: {name}{exc.path} must be {exc.expected}, not {show(exc.value)}"
    return ArgumentError.at(problem, where(obj, name))


def _title(obj: Any) -> str:
    """The object as an error names it: its class, and its name when it was given one."""
    cls = type(obj)
    label = getattr(obj, "name", None)
    given = isinstance(label, str) and label and label not in (getattr(cls, "default_name", None), cls.__name__)
    return f"{cls.__name__} {label!r}" if given else cls.__name__


def _call_error(obj: Any, exc: TypeError) -> ArgumentError:
    """A call that does not fit the constructor, said in the pipeline's words."""
    cls = type(obj)
    text = str(exc)
    if match := re.search(r"unexpected keyword argument '(\w+)'", text):
        known = _parameters(cls)
        close = get_close_matches(match.group(1), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else f"; it takes {', '.join(known)}"
        return ArgumentError.at(f"{cls.__name__} has no argument {match.group(1)!r}{hint}", where(obj, match.group(1)))
    if match := re.search(r"missing \d+ required \S+ arguments?: '(\w+)'", text):
        return ArgumentError.at(f"{cls.__name__} needs {match.group(1)}", where(obj))
    return ArgumentError.at(f"{cls.__name__}: {text}", where(obj))


@functools.cache
def _parameters(cls: type) -> list[str]:
    """The argument names a class takes by keyword, through the ``**flags`` its constructors pass up."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for parameter in inspect.signature(init).parameters.values():
            keyword = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            if keyword and parameter.name != "self" and parameter.name not in names:
                names.append(parameter.name)
    return names


@functools.cache
def _position(cls: type, name: str) -> int | None:
    """Where ``name`` goes among the positional arguments of ``cls(...)``, if it can go there."""
    try:
        parameters = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        return None
    positional = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return positional.index(name) if name in positional else None
