"""Properties and rendering: values that a build fills in when a step runs.

A build carries properties, each a value with the source it came from (the pipeline, a worker, a
builder, a scheduler, a change, a force form, a step). Step arguments may be *renderables* that are
resolved against the running build only when the step starts::

    Shell(Interpolate("make test VERSION=%(prop:version)s"))
    Shell(["deploy", Property("target", default="staging")])

    @renderer
    def jobs(build):
        return str(build.properties.get("cpus", 1) * 2)

``Interpolate`` speaks Buildbot's syntax: ``%(prop:name)s``, ``%(src:codebase:attr)s``,
``%(kw:key)s``, ``%(secret:name)s`` and ``%(worker:attr)s``, with the modifiers ``:-default`` (when
missing), ``:~default`` (when missing or false), ``:+text`` (text when present, else empty),
``:?|yes|no`` (by presence: an empty string is present) and ``:#?|yes|no`` (by truth). A default or
an alternative is a format itself: ``%(prop:a:-%(prop:b)s)s``. Unlike Buildbot, a property set to
None counts as missing, so it takes the default rather than rendering as an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError, FlowbotError
from .fields import FLAG, FUNCTION, TEXT, checked
from .location import caller


class RenderError(FlowbotError):
    """A renderable could not be resolved (an unknown key, a missing secret)."""


class Properties(Mapping[str, Any]):
    """Property values by name, each remembering where it came from."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[Any, str]] = {}

    def set(self, name: str, value: Any, source: str) -> None:
        self._values[name] = (value, source)

    def update(self, values: Mapping[str, Any], source: str) -> None:
        for name, value in values.items():
            self._values[name] = (value, source)

    def source(self, name: str) -> str | None:
        entry = self._values.get(name)
        return entry[1] if entry else None

    def with_sources(self) -> dict[str, list[Any]]:
        """``{name: [value, source]}``: the form the store and the API use."""
        return {name: [value, source] for name, (value, source) in self._values.items()}

    def __getitem__(self, name: str) -> Any:
        return self._values[name][0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Properties({ {k: v for k, (v, _) in self._values.items()}!r})"


class RenderContext(Protocol):
    """What rendering may consult: the running build provides it."""

    properties: Properties

    def sourcestamp(self, codebase: str) -> Mapping[str, Any] | None: ...

    def worker_info(self) -> Mapping[str, Any]: ...

    def secret(self, name: str) -> str: ...


@runtime_checkable
class Renderable(Protocol):
    def render(self, build: RenderContext) -> Any: ...


#: Types that render as themselves, checked first: most of what a step renders is plain text.
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


def render(value: Any, build: RenderContext) -> Any:
    """Resolve ``value`` against ``build``, looking inside lists, tuples and dicts."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    # Checking a runtime Protocol costs tens of microseconds: plain lists and dicts skip it.
    if kind is not list and kind is not dict and isinstance(value, Renderable) and not isinstance(value, type):
        return render(value.render(build), build)
    if isinstance(value, list):
        return [render(v, build) for v in value]
    if isinstance(value, tuple):
        return tuple(render(v, build) for v in value)
    if isinstance(value, dict):
        return {render(k, build): render(v, build) for k, v in value.items()}
    return value


class Property:
    """The value of one property, or ``default`` when the build has none (or a false one, with
    ``default_when_false=True``)."""

    @checked(name=TEXT, default_when_false=FLAG)
    def __init__(self, name: str, default: Any = None, *, default_when_false: bool = False):
        self.name = name
        self.default = default
        self.default_when_false = default_when_false

    def render(self, build: RenderContext) -> Any:
        if self.name not in build.properties:
            return render(self.default, build)
        value = build.properties[self.name]
        if self.default_when_false and not value:
            return render(self.default, build)
        return value

    def __repr__(self) -> str:
        return f"Property({self.name!r})"


class renderer:
    """Turn ``fn(build) -> value`` into a renderable, resolved when the step runs."""

    @checked(fn=FUNCTION)
    def __init__(self, fn: Callable[[RenderContext], Any]):
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "renderer")

    def render(self, build: RenderContext) -> Any:
        return self.fn(build)

    def __repr__(self) -> str:
        return f"renderer({self.__name__})"


#: Buildbot's rule for the names of properties, keywords, worker items and codebases.
_NAME = re.compile(r"[\w.-]+\Z")
_SRC_ATTRS = ("repository", "branch", "revision", "project", "codebase")
#: Longest first, so ``#?`` is not read as ``#`` and ``?``.
_MODIFIERS = ("#?", "?", "-", "~", "+")


class Interpolate:
    """A string with ``%(selector:name:modifier)s`` substitutions, filled in when the step runs.

    The format is read when the pipeline is defined: a selector, name or modifier that Interpolate
    does not understand is a :class:`~flowbot.errors.ConfigError` naming the line that wrote it.

    Args:
        fmt: the format, with Buildbot's keys (see the module docstring), or ``%s`` for ``args``.
        *args: renderables or values for positional ``%s`` placeholders.
        **kwargs: values for ``%(kw:name)s`` (renderables allowed).

    Raises:
        ConfigError: a format Interpolate cannot read.
    """

    def __init__(self, fmt: str, *args: Any, **kwargs: Any):
        self.fmt = fmt
        self.args = args
        self.kwargs = kwargs
        try:
            if not isinstance(fmt, str):
                raise TypeError(f"wants a format string, not {type(fmt).__name__}")
            if args and (kwargs or "%(" in fmt.replace("%%", "")):
                raise ValueError("takes either positional %s arguments or %(key)s keys, not both")
            self._format = None if args else _Format(fmt, kwargs)
            if args:
                fmt % ((0,) * len(args))  # the placeholders and the arguments must match
        except (ValueError, TypeError) as exc:
            where = caller()
            raise ConfigError(
                f"Interpolate({fmt!r}): {exc}", where and where.filename, where and where.lineno
            ) from None

    def render(self, build: RenderContext) -> str:
        if self._format is None:
            return self.fmt % tuple(render(arg, build) for arg in self.args)
        return self._format.render(build)

    def __repr__(self) -> str:
        return f"Interpolate({self.fmt!r})"


class _Format:
    """A ``%(key)s`` format whose keys are parsed once; a default or an alternative is one too."""

    def __init__(self, fmt: str, kwargs: dict[str, Any]):
        self.fmt = fmt
        keys = _Keys()
        try:
            fmt % keys
        except ValueError as exc:
            raise ValueError(f"{exc}: a key is written %(prop:name)s, and %% is a percent sign") from None
        except TypeError:
            raise ValueError("a %s placeholder takes positional arguments, not %(key)s keys") from None
        if not keys.seen:
            try:
                fmt % ()
            except TypeError:
                raise ValueError("a %s placeholder without an argument for it") from None
        self.keys = {key: _Key.parse(key, kwargs) for key in keys.seen}
        self.kwargs = kwargs

    def render(self, build: RenderContext) -> str:
        return self.fmt % {text: key.render(build, self.kwargs) for text, key in self.keys.items()}


class _Keys(dict):
    """Collects the keys of a format (0 suits every conversion: ``%s``, ``%d``, ``%r``...)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __getitem__(self, key: str) -> int:
        self.seen.append(key)
        return 0


class _Key:
    """One ``%(selector:name:modifier)s``: what it looks up, and what it gives either way.

    ``truth`` makes a false value count as missing (``:~`` and ``:#?``); ``present`` is rendered
    when the value is there (None: the value itself), ``missing`` when not (None: nothing).
    """

    def __init__(self, selector: str, name: str, modifier: str, present: _Format | None, missing: _Format | None):
        self.selector = selector
        self.name = name
        self.modifier = modifier
        self.truth = modifier in ("~", "#?")
        self.present = present
        self.missing = missing

    @classmethod
    def parse(cls, key: str, kwargs: dict[str, Any]) -> _Key:
        selector, colon, rest = key.partition(":")
        if not colon or selector not in ("prop", "src", "kw", "secret", "worker"):
            raise ValueError(f"unknown key {key!r}; a key starts with prop:, src:, kw:, secret: or worker:")
        parts = rest.split(":", 2 if selector == "src" else 1)
        if selector == "src":
            if len(parts) < 2:
                raise ValueError(f"{key!r} needs a codebase and an attribute: %(src:codebase:attribute)s")
            if (parts[0] and not _NAME.match(parts[0])) or parts[1] not in _SRC_ATTRS:
                raise ValueError(f"{key!r}: write %(src:codebase:attribute)s, the attribute one of {_SRC_ATTRS}")
            parts[:2] = [f"{parts[0]}:{parts[1]}"]
        elif not (parts[0] if selector == "secret" else _NAME.match(parts[0])):
            raise ValueError(f"{key!r}: a {selector}: name is made of letters, digits, '_', '.' and '-'")
        name = parts[0]
        if len(parts) == 1:
            return cls(selector, name, "", None, None)
        text = parts[1]
        modifier = next((m for m in _MODIFIERS if text.startswith(m)), None)
        if modifier is None:
            raise ValueError(f"{key!r}: unknown modifier :{text}; there are :-, :~, :+, :?|a|b and :#?|a|b")
        text = text[len(modifier) :]
        if modifier in ("-", "~"):
            return cls(selector, name, modifier, None, _Format(text, kwargs))
        if modifier == "+":
            return cls(selector, name, modifier, _Format(text, kwargs), None)
        yes, no = _alternatives(key, text)
        return cls(selector, name, modifier, _Format(yes, kwargs), _Format(no, kwargs))

    def render(self, build: RenderContext, kwargs: dict[str, Any]) -> Any:
        present, value = _lookup(self.selector, self.name, build, kwargs)
        if present and (value or not self.truth):
            if self.present is not None:
                return self.present.render(build)
            return "" if value is None else value
        if self.missing is not None:
            return self.missing.render(build)
        if self.selector == "secret" and not self.modifier:
            raise RenderError(f"no secret named {self.name!r}")
        return ""  # Buildbot renders a missing value as empty


def _alternatives(key: str, text: str) -> tuple[str, str]:
    """``|yes|no`` split at its second delimiter outside any ``%(...)s`` (any character but ``(``)."""
    if not text or text[0] == "(":
        raise ValueError(f"{key!r}: a :? or :#? modifier is followed by a delimiter, as in :?|yes|no")
    delimiter, depth = text[0], 0
    for index, char in enumerate(text[1:], 1):
        depth += (char == "(") - (char == ")")
        if depth == 0 and char == delimiter:
            return text[1:index], text[index + 1 :]
    raise ValueError(f"{key!r}: a :? or :#? modifier needs two alternatives, as in :?{delimiter}yes{delimiter}no")


def _lookup(selector: str, name: str, build: RenderContext, kwargs: dict[str, Any]) -> tuple[bool, Any]:
    """Whether the value a key names is there, and what it is."""
    if selector == "prop":  # a property set to None counts as missing, and never renders as "None"
        value = build.properties.get(name)
        return (value is not None, value)
    if selector == "kw":
        return (True, render(kwargs[name], build)) if name in kwargs else (False, None)
    if selector == "src":
        codebase, _, attr = name.rpartition(":")
        value = (build.sourcestamp(codebase) or {}).get(attr)
        return (value is not None, value)
    if selector == "worker":
        info = build.worker_info()
        return (name in info, info.get(name))
    try:
        return True, build.secret(name)
    except KeyError:
        return False, None
