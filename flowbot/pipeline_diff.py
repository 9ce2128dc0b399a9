"""What changes from one pipeline to another: nodes added, removed or changed, field by field.

Two pipelines are compared node by node (workers, sources, schedulers, builders, reporters) by
name, and a node present in both by its settings: the public attributes its constructor set,
compared by value, so running a notebook cell again with the same code changes nothing. Functions
(a ``change_filter``, a ``next_worker`` hook) compare by their code and the values they close
over; a builder's steps compare by name, then setting by setting. Secrets are never shown.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .pipeline import Pipeline

#: Settings whose values are never shown, only said to have changed.
_SECRET = re.compile(r"secret|token|password|private_key", re.IGNORECASE)
#: Attributes that say where an object was made, not what it does.
_NOT_SETTINGS = frozenset({"name", "defined_at", "step_names"})
#: How deep values are followed into nested objects.
_DEPTH = 6
_MISSING = object()


class Edit(enum.StrEnum):
    """What happened to a node."""

    #: The new pipeline has it, the old one did not.
    ADDED = "added"
    #: The old pipeline had it, the new one does not.
    REMOVED = "removed"
    #: Both have it, with other settings.
    CHANGED = "changed"


#: The kinds of node compared, in the order they are shown.
KINDS = ("worker", "source", "scheduler", "builder", "reporter")


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One setting of a node, before and after (as text; a secret shows as ``(hidden)``)."""

    field: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class NodeChange:
    """A node of the pipeline that was added, removed or changed."""

    kind: str
    name: str
    edit: Edit
    #: The settings that changed (for a changed node).
    fields: tuple[FieldChange, ...] = ()

    def __str__(self) -> str:
        head = f"{self.edit.value} {self.kind} {self.name!r}"
        return "\n".join([head, *(f"    {f.field}: {f.before} -> {f.after}" for f in self.fields)])


@dataclass(frozen=True, slots=True)
class PipelineDiff:
    """Every difference between two pipelines; empty (and false) when they do the same."""

    changes: tuple[NodeChange, ...]

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __iter__(self) -> Iterator[NodeChange]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def of(self, kind: str, edit: Edit | None = None) -> list[str]:
        """The names of the nodes of ``kind`` (``"builder"``...) with that ``edit`` (any, by default)."""
        return [c.name for c in self.changes if c.kind == kind and (edit is None or c.edit == edit)]

    def to_frame(self) -> pd.DataFrame:
        """One row per setting changed, and per node added or removed: ``kind, name, edit, field, before, after``."""
        import pandas as pd

        rows = [
            (c.kind, c.name, c.edit.value, f.field, f.before, f.after)
            for c in self.changes
            for f in (c.fields or (FieldChange("", "", ""),))
        ]
        return pd.DataFrame(rows, columns=["kind", "name", "edit", "field", "before", "after"])

    def __str__(self) -> str:
        return "\n".join(map(str, self.changes)) if self.changes else "no changes"

    def _repr_html_(self) -> str:
        return diff_table(self)


def diff(old: Pipeline, new: Pipeline) -> PipelineDiff:
    """What changes from ``old`` to ``new`` (see :meth:`Pipeline.diff <flowbot.Pipeline.diff>`)."""
    changes: list[NodeChange] = []
    for kind in KINDS:
        before = {node.name: node for node in getattr(old, f"{kind}s")}
        after = {node.name: node for node in getattr(new, f"{kind}s")}
        for name, node in after.items():
            if name not in before:
                changes.append(NodeChange(kind, name, Edit.ADDED))
            else:
                fields = tuple(_node_fields(before[name], node))
                if fields:
                    changes.append(NodeChange(kind, name, Edit.CHANGED, fields))
        changes += [NodeChange(kind, name, Edit.REMOVED) for name in before if name not in after]
    return PipelineDiff(tuple(changes))


def _node_fields(old: Any, new: Any) -> Iterator[FieldChange]:
    if type(old) is not type(new):
        yield FieldChange("kind", type(old).__name__, type(new).__name__)
        return
    if hasattr(old, "step_names") and hasattr(new, "step_names"):  # a builder
        yield from _fields(old, new, skip={"steps"})
        yield from _steps(old, new)
        return
    yield from _fields(old, new)


def _steps(old: Any, new: Any) -> Iterator[FieldChange]:
    before = dict(zip(old.step_names, old.steps, strict=True))
    after = dict(zip(new.step_names, new.steps, strict=True))
    kept_old = [n for n in old.step_names if n in after]
    kept_new = [n for n in new.step_names if n in before]
    if kept_old != kept_new or set(before) != set(after):
        yield FieldChange("steps", " -> ".join(old.step_names), " -> ".join(new.step_names))
    for name in kept_new:
        yield from _fields(before[name], after[name], prefix=f"step {name!r} ")


def _fields(old: Any, new: Any, prefix: str = "", skip: frozenset[str] | set[str] = frozenset(), depth: int = 0):
    if type(old) is not type(new):
        yield FieldChange(prefix.rstrip(" .") or "kind", _shown(old), _shown(new))
        return
    before, after = _settings(old), _settings(new)
    for name in [*before, *(n for n in after if n not in before)]:
        if name in skip:
            continue
        x, y = before.get(name, _MISSING), after.get(name, _MISSING)
        if _key(x) == _key(y):
            continue
        if _is_object(x) and type(x) is type(y) and depth < _DEPTH and not _told_apart(x, y):
            yield from _fields(x, y, prefix=f"{prefix}{name}.", depth=depth + 1)
        elif _SECRET.search(name):
            yield FieldChange(prefix + name, "(hidden)", "(hidden)")
        else:
            yield FieldChange(prefix + name, _shown(x), _shown(y))


def _told_apart(x: Any, y: Any) -> bool:
    """Whether the objects' own ``repr`` shows how they differ (else their settings are compared one by one)."""
    return type(x).__repr__ is not object.__repr__ and repr(x) != repr(y)


def _settings(obj: Any) -> dict[str, Any]:
    """An object's settings: its public attributes (or a dataclass's fields), but its name and place."""
    if dataclasses.is_dataclass(obj):
        items = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    else:
        items = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    return {k: v for k, v in items.items() if not k.startswith("_") and k not in _NOT_SETTINGS}


def _is_object(value: Any) -> bool:
    """Whether ``value`` is a configured object whose settings can be compared one by one."""
    return (
        not isinstance(value, (type, types.FunctionType, types.MethodType, enum.Enum, PurePath))
        and (hasattr(value, "__dict__") or dataclasses.is_dataclass(value))
        and not isinstance(value, (list, tuple, dict, set, frozenset))
    )


def _key(value: Any, depth: int = 0) -> Any:
    """What two equal settings share: values as they are, functions by their code and what they close over."""
    if value is _MISSING or value is None or isinstance(value, (str, bytes, int, float, bool, enum.Enum, PurePath)):
        return (type(value).__name__, value)
    if depth > _DEPTH:
        return ("deep", repr(value))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(_key(v, depth + 1) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(_key(v, depth + 1) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), _key(v, depth + 1)) for k, v in value.items()))
    if isinstance(value, types.MethodType):
        return ("method", _key(value.__func__, depth + 1), _key(value.__self__, depth + 1))
    if isinstance(value, types.FunctionType):
        cells = tuple(_key(cell.cell_contents, depth + 1) for cell in value.__closure__ or ())
        defaults = _key(value.__defaults__, depth + 1)
        return ("fn", value.__qualname__, _code_key(value.__code__), cells, defaults)
    if _is_object(value):
        return (type(value).__qualname__, tuple((k, _key(v, depth + 1)) for k, v in _settings(value).items()))
    return ("repr", repr(value))


def _code_key(code: types.CodeType) -> tuple[Any, ...]:
    consts = tuple(_code_key(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts)
    return (code.co_code, consts, code.co_names)


def _shown(value: Any) -> str:
    """A setting as people read it."""
    if value is _MISSING:
        return "(none)"
    if isinstance(value, types.FunctionType):
        name = "a lambda" if value.__name__ == "<lambda>" else f"{value.__qualname__}()"
        cells = zip(value.__code__.co_freevars, value.__closure__ or (), strict=True)
        over = ", ".join(f"{n}={_shown(c.cell_contents)}" for n, c in cells if not callable(c.cell_contents))
        return f"{name} of {over}" if over else name
    if isinstance(value, types.MethodType):
        return f"{value.__qualname__}()"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def diff_table(diff: PipelineDiff) -> str:
    """The diff as an HTML table, one row per setting changed (for notebooks)."""
    if not diff:
        return "<p><i>no changes</i></p>"
    colours = {Edit.ADDED: "#1e7e34", Edit.REMOVED: "#c5221f", Edit.CHANGED: "#b06000"}
    rows = []
    for change in diff:
        head = (
            f"<td style='color:{colours[change.edit]}'>{change.edit.value}</td>"
            f"<td>{change.kind}</td><td><b>{escape(change.name)}</b></td>"
        )
        if not change.fields:
            rows.append(f"<tr>{head}<td colspan=3></td></tr>")
        for f in change.fields:
            rows.append(
                f"<tr>{head}<td>{escape(f.field)}</td><td><code>{escape(f.before)}</code></td>"
                f"<td><code>{escape(f.after)}</code></td></tr>"
            )
            head = "<td></td><td></td><td></td>"
    return (
        "<table class='flowbot-diff'><thead><tr><th></th><th>kind</th><th>name</th><th>setting</th>"
        f"<th>before</th><th>after</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
