"""JUnit XML test reports, parsed safely into one :class:`TestCase` per test.

A report comes from a worker, so it is untrusted input: it is parsed with defusedxml, which
refuses DTDs, entity declarations and external references (no "billion laughs", no reading files
off the master), and anything that is not a well-formed JUnit report raises :class:`JUnitError`
with the reason, for the step to turn into a warning. The dialects in use (pytest, Maven Surefire,
Go's go-junit-report, JUnit 5's console launcher) agree on the parts read here: ``testsuite``
elements, possibly nested under ``testsuites``, holding ``testcase`` elements whose ``failure``,
``error`` or ``skipped`` child gives the outcome. Where a test failed comes from the last
``path:line:`` of a relative path in the failure's text (pytest's and Go's tracebacks end so),
else from the ``file`` and ``line`` attributes some tools write (pytest's xunit1, jest-junit).

Hook for a step that collects reports: once the file's bytes are on the master, call
:func:`parse` and hand the cases to :meth:`flowbot.store.Store.add_test_results` with the build's
and step's references; on :class:`JUnitError`, write the message to the step's log and end the
step with WARNINGS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .errors import FlowbotError

#: Longest failure message kept per test, in characters (a full traceback stays in the step's log).
MAX_MESSAGE = 4000
#: Longest test time believed, in seconds (a year): a longer one is a tool's garbage, recorded as unknown.
MAX_SECONDS = 365 * 86400.0

#: ``tests/test_calc.py:12:`` at the start of a line of a traceback: a relative path, a line number.
_LOCATION = re.compile(r"^(?P<file>[\w.-][\w./-]*\.\w+):(?P<line>[0-9]{1,9}):", re.MULTILINE)


class JUnitError(FlowbotError):
    """A test report that is not well-formed JUnit XML, or that XML safety rules refuse."""


class Outcome(StrEnum):
    """How one test case ended."""

    #: It ran and passed.
    PASSED = "passed"
    #: An assertion failed (``<failure>``).
    FAILED = "failed"
    #: It could not run to the end (``<error>``: an unexpected exception, a broken fixture).
    ERROR = "error"
    #: It did not run (``<skipped>``; pytest reports expected failures this way too).
    SKIPPED = "skipped"


#: The order tests are listed in: what needs a look first.
SHOWN_ORDER = (Outcome.FAILED, Outcome.ERROR, Outcome.SKIPPED, Outcome.PASSED)
#: The order of a summary's counts: what failed, then what ran, then what did not.
COUNTED_ORDER = (Outcome.FAILED, Outcome.ERROR, Outcome.PASSED, Outcome.SKIPPED)


def describe(counts: Mapping[str, int]) -> str:
    """``3 failed, 1 error, 120 passed``: tests by outcome in one line, what failed first."""
    parts = []
    for outcome in COUNTED_ORDER:
        n = counts.get(str(outcome), 0)
        if n:
            word = ("error" if n == 1 else "errors") if outcome == Outcome.ERROR else str(outcome)
            parts.append(f"{n} {word}")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class TestCase:
    """One test case of a report."""

    __test__ = False  # not a pytest test class, whatever its name says

    #: The ``name`` of the nearest enclosing ``testsuite`` ("" without one).
    suite: str
    #: The test's class or module (``classname``), "" when the report has none.
    classname: str
    name: str
    outcome: Outcome
    #: Seconds, as the report says (None when it does not).
    duration: float | None
    #: The failure's, error's or skip's message, cut to :data:`MAX_MESSAGE` characters.
    message: str
    #: The file the test (or its failure) is in, relative to where the tests ran; "" when unknown.
    file: str = ""
    #: Its line in ``file`` (from 1), when known.
    line: int | None = None


def parse(report: bytes | str, source: str = "report") -> list[TestCase]:
    """Read a JUnit XML report.

    Args:
        report: the file's content.
        source: the file's name, for error messages.

    Raises:
        JUnitError: malformed XML, an encoding the parser cannot read, a DTD or entities, a root
            that is neither ``testsuites`` nor ``testsuite``, or a ``testcase`` without a name.
    """
    try:
        root = fromstring(report, forbid_dtd=True)
    except ParseError as exc:
        raise JUnitError(f"{source} is not well-formed XML: {exc}") from None
    except DefusedXmlException as exc:
        raise JUnitError(f"{source} was refused for safety: {exc}") from None
    except (LookupError, ValueError) as exc:
        # An unknown encoding (LookupError), or one expat cannot decode: multi-byte ones such as
        # shift_jis, or text that does not encode (ValueError, UnicodeError among them).
        raise JUnitError(f"{source} cannot be decoded ({exc}): write the report in UTF-8") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitError(f"{source} is not a JUnit report: its root element is <{root.tag}>")
    return _collect(root, source)


def _collect(root: Element, source: str) -> list[TestCase]:
    """The test cases under ``root`` in document order, each with its nearest suite's name.

    A loop rather than recursion: a report may nest suites thousands deep.
    """
    cases: list[TestCase] = []
    todo = [(root, "")]
    while todo:
        element, suite = todo.pop()
        if element.tag == "testcase":
            cases.append(_case(element, suite, source))
            continue
        if element.tag == "testsuite":
            suite = element.get("name", suite)
        inner = [child for child in element if child.tag in ("testcase", "testsuite", "testsuites")]
        todo.extend((child, suite) for child in reversed(inner))
    return cases


def _case(element: Element, suite: str, source: str) -> TestCase:
    name = element.get("name")
    if not name:
        raise JUnitError(f"{source} has a <testcase> without a name")
    outcome, message, text = Outcome.PASSED, "", ""
    for tag, kind in (("failure", Outcome.FAILED), ("error", Outcome.ERROR), ("skipped", Outcome.SKIPPED)):
        found = element.find(tag)
        if found is not None:
            outcome = kind
            text = (found.text or "").strip()
            message = found.get("message") or text
            break
    file, line = _location(element, text)
    return TestCase(
        suite=suite,
        classname=element.get("classname", ""),
        name=name,
        outcome=outcome,
        duration=_seconds(element.get("time")),
        message=message[:MAX_MESSAGE],
        file=file,
        line=line,
    )


def _location(element: Element, text: str) -> tuple[str, int | None]:
    """Where a test failed: the last relative ``path:line:`` of its failure's text (the line that
    failed), else its ``file`` and ``line`` attributes (where the test is)."""
    found = list(_LOCATION.finditer(text))
    if found:
        file, line = found[-1].group("file"), found[-1].group("line")
    else:
        file, line = element.get("file", ""), element.get("line", "")
    return file[:1000], max(1, int(line)) if file and line.isdigit() and len(line) < 10 else None


def _seconds(text: str | None) -> float | None:
    """The test's time, or None for none that is believable (inf, nan, negative, over a year).

    Some tools write thousands separators ("1,234.5"); an unreadable time is not worth a failure.
    """
    if not text:
        return None
    try:
        seconds = float(text.replace(",", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds <= MAX_SECONDS else None  # NaN fails both comparisons
