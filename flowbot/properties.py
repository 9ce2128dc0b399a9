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
``%(kw:key)s``, ``%(secret:name)s`` and ``%(worker:attr)s``, with the modifiers ``:-default``
(when missing or None), ``:~default`` (when missing or false), ``:+text`` (text when present, else empty)
and ``:?|yes|no`` (by truth).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from .errors import FlowbotError


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

    def __init__(self, fn: Callable[[RenderContext], Any]):
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "renderer")

    def render(self, build: RenderContext) -> Any:
        return self.fn(build)

    def __repr__(self) -> str:
        return f"renderer({self.__name__})"


_MODIFIER = re.compile(r"^(?P<name>.*?)(?::(?P<op>[-~+])(?P<arg>.*)|:\?\|(?P<yes>[^|]*)\|(?P<no>.*))?$", re.S)
_SRC_ATTRS = ("repository", "branch", "revision", "project", "codebase")


class Interpolate:
    """A string with ``%(key:...)s`` substitutions, filled in when the step runs.

    Args:
        fmt: the format, with Buildbot's keys (see the module docstring), or ``%s`` for ``args``.
        *args: renderables or values for positional ``%s`` placeholders.
        **kwargs: values for ``%(kw:name)s``.
    """

    def __init__(self, fmt: str, *args: Any, **kwargs: Any):
        if not isinstance(fmt, str):
            raise TypeError(f"Interpolate wants a format string, not {fmt!r}")
        if args and "%(" in fmt:
            raise ValueError("Interpolate takes either positional %s arguments or %(key)s keys, not both")
        self.fmt = fmt
        self.args = args
        self.kwargs = kwargs
        if not args:
            fmt % _Checker()  # raise at definition time for unknown keys and bad syntax

    def render(self, build: RenderContext) -> str:
        if self.args:
            return self.fmt % tuple(render(arg, build) for arg in self.args)
        return self.fmt % _Lookup(self, build)

    def __repr__(self) -> str:
        return f"Interpolate({self.fmt!r})"


class _Checker(dict):
    """Validates every ``%(key)s`` of a format without a build."""

    def __getitem__(self, key: str) -> str:
        kind = key.split(":", 1)[0]
        if kind not in ("prop", "src", "kw", "secret", "worker") or ":" not in key:
            raise ValueError(f"Interpolate: unknown key {key!r}; use prop:, src:, kw:, secret: or worker:")
        if not _MODIFIER.match(key.split(":", 1)[1]):
            raise ValueError(f"Interpolate: cannot read {key!r}")
        return ""


class _Lookup(dict):
    """The mapping ``%`` formatting reads ``%(prop:name:-default)s`` keys from."""

    def __init__(self, interpolate: Interpolate, build: RenderContext):
        super().__init__()
        self.interpolate = interpolate
        self.build = build

    def __getitem__(self, key: str) -> Any:
        kind, _, rest = key.partition(":")
        match = _MODIFIER.match(rest)
        name = match["name"]
        present, value = self._value(kind, name)
        if match["yes"] is not None:
            return match["yes"] if present and value else match["no"]
        op, arg = match["op"], match["arg"]
        if op == "-":
            return value if present else arg
        if op == "~":
            return value if present and value else arg
        if op == "+":
            return arg if present else ""
        if not present:
            if kind == "secret":
                raise RenderError(f"no secret named {name!r}")
            return ""  # Buildbot renders a missing property as empty
        return value

    def _value(self, kind: str, name: str) -> tuple[bool, Any]:
        build = self.build
        if kind == "prop":  # a property set to None counts as missing, and never renders as "None"
            value = build.properties.get(name)
            return (value is not None, value)
        if kind == "kw":
            if name not in self.interpolate.kwargs:
                return False, None
            return True, render(self.interpolate.kwargs[name], build)
        if kind == "src":
            codebase, _, attr = name.rpartition(":")
            if attr not in _SRC_ATTRS:
                raise RenderError(f"src: attribute must be one of {_SRC_ATTRS}, not {attr!r}")
            stamp = build.sourcestamp(codebase)
            return (stamp is not None and stamp.get(attr) is not None, stamp and stamp.get(attr))
        if kind == "worker":
            info = build.worker_info()
            return (name in info, info.get(name))
        if kind == "secret":
            try:
                return True, build.secret(name)
            except KeyError:
                return False, None
        raise RenderError(f"unknown Interpolate key kind {kind!r}")
