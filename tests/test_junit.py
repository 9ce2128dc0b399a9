"""JUnit XML reports (``flowbot/junit.py``): real reports parse, hostile or broken ones are refused clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowbot.junit import MAX_MESSAGE, JUnitError, Outcome, TestCase, parse

#: What ``pytest --junitxml`` writes, trimmed: one suite under ``testsuites``, every outcome.
PYTEST_REPORT = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests">
  <testsuite name="pytest" errors="1" failures="1" skipped="1" tests="4" time="0.321">
    <testcase classname="tests.test_parser" name="test_ok" time="0.002"/>
    <testcase classname="tests.test_parser" name="test_bad" time="0.010">
      <failure message="assert 1 == 2">def test_bad():\n&gt;       assert 1 == 2</failure>
    </testcase>
    <testcase classname="tests.test_db" name="test_conn" time="1,234.5">
      <error message="fixture 'db' failed">ConnectionRefusedError</error>
    </testcase>
    <testcase classname="tests.test_db" name="test_later">
      <skipped type="pytest.skip">needs a GPU</skipped>
    </testcase>
  </testsuite>
</testsuites>
"""


def test_a_pytest_report_gives_one_case_per_test_with_its_outcome():
    cases = parse(PYTEST_REPORT)
    assert cases == [
        TestCase("pytest", "tests.test_parser", "test_ok", Outcome.PASSED, 0.002, ""),
        TestCase("pytest", "tests.test_parser", "test_bad", Outcome.FAILED, 0.010, "assert 1 == 2"),
        TestCase("pytest", "tests.test_db", "test_conn", Outcome.ERROR, 1234.5, "fixture 'db' failed"),
        TestCase("pytest", "tests.test_db", "test_later", Outcome.SKIPPED, None, "needs a GPU"),
    ]


def test_a_bare_testsuite_root_and_nested_suites_name_the_nearest_suite():
    report = """<testsuite name="outer">
        <testcase name="a"/>
        <testsuite name="inner"><testcase classname="C" name="b" time="oops"/></testsuite>
    </testsuite>"""
    cases = parse(report)
    assert [(c.suite, c.classname, c.name, c.duration) for c in cases] == [
        ("outer", "", "a", None),
        ("inner", "C", "b", None),
    ]


@pytest.mark.parametrize("time", ["inf", "-inf", "nan", "Infinity", "-0.5", "1e12", "1e400"])
def test_a_time_no_test_can_take_is_recorded_as_unknown(time: str):
    report = f'<testsuite><testcase name="t" time="{time}"/><testcase name="u" time="31536000"/></testsuite>'
    assert [case.duration for case in parse(report)] == [None, 365 * 86400.0]


def test_suites_nested_thousands_deep_are_read():
    report = b"<testsuites>" + b"<testsuite name='s'>" * 5000 + b"<testcase name='t'/>" + b"</testsuite>" * 5000
    assert parse(report + b"</testsuites>") == [TestCase("s", "", "t", Outcome.PASSED, None, "")]


def test_long_messages_are_cut():
    report = f'<testsuite><testcase name="t"><failure>{"x" * (MAX_MESSAGE + 50)}</failure></testcase></testsuite>'
    assert len(parse(report)[0].message) == MAX_MESSAGE


#: A report declaring an encoding that the XML parser cannot decode (those of Japanese text, say).
ENCODED = '<?xml version="1.0" encoding="shift_jis"?><testsuite name="\u30c6\u30b9\u30c8"/>'


@pytest.mark.parametrize(
    ("report", "reason"),
    [
        (b"<testsuite><testcase name='a'>", "not well-formed XML"),
        (b"", "not well-formed XML"),
        (b"<html><body/></html>", "root element is <html>"),
        (b"<testsuite><testcase classname='x'/></testsuite>", "without a name"),
        (b'<?xml version="1.0" encoding="bogus"?><testsuite/>', r"cannot be decoded \(unknown encoding: bogus\)"),
        (b'<?xml version="1.0" encoding="hex"?><testsuite/>', "cannot be decoded.*write the report in UTF-8"),
        (ENCODED.encode("shift_jis"), "cannot be decoded.*multi-byte.*write the report in UTF-8"),
        (ENCODED.replace("shift_jis", "euc-jp").encode("euc-jp"), "cannot be decoded.*multi-byte"),
        (ENCODED.replace("shift_jis", "utf-32").encode("utf-32"), "not well-formed XML"),
    ],
)
def test_malformed_reports_raise_a_clear_error(report: bytes, reason: str):
    with pytest.raises(JUnitError, match=reason) as caught:
        parse(report, source="report.xml")
    assert "report.xml" in str(caught.value)


def test_entities_are_never_expanded():
    # Given a "billion laughs" report, and one that reads a file off the master
    laughs = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<testsuite><testcase name="&lol2;"/></testsuite>"""
    external = b"""<?xml version="1.0"?>
<!DOCTYPE t [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<testsuite><testcase name="&secret;"/></testsuite>"""
    # Then both are refused before any entity is expanded
    for report in (laughs, external):
        with pytest.raises(JUnitError, match="refused for safety"):
            parse(report)


def test_where_a_test_is_comes_from_its_attributes_or_its_traceback(tmp_path):
    # Given real reports of one failing test by pytest, in its default dialect and in xunit1,
    # which writes file and line attributes
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text(
        "import json\n\n\ndef test_add():\n    assert 2 * 3 == 5\n\n\ndef test_parse():\n    json.loads('{')\n"
    )
    reports = {}
    for family in ("xunit2", "xunit1"):
        report = tmp_path / f"{family}.xml"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
             "-o", f"junit_family={family}", "tests"],
            cwd=tmp_path, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        reports[family] = {case.name: case for case in parse(report.read_bytes())}

    # Then the assertion is placed at its line from the traceback (a relative path), the other
    # failure at the test's own line in the test file, not inside json's module (an absolute path)
    default = reports["xunit2"]
    assert (default["test_add"].file, default["test_add"].line) == ("tests/test_calc.py", 5)
    assert (default["test_parse"].file, default["test_parse"].line) == ("tests/test_calc.py", 9)
    assert (reports["xunit1"]["test_add"].file, reports["xunit1"]["test_add"].line) == ("tests/test_calc.py", 5)
    # Without a traceback that says, the attributes do; a test located nowhere has no place
    bare = b'<testsuite><testcase name="t" file="src/a.test.js"><failure message="no"/></testcase></testsuite>'
    assert [(c.file, c.line) for c in parse(bare)] == [("src/a.test.js", None)]
    lined = bare.replace(b'file="src/a.test.js"', b'file="a_test.go" line="12"')
    assert [(c.file, c.line) for c in parse(lined)] == [("a_test.go", 12)]
    assert parse(PYTEST_REPORT)[1].file == "" and parse(PYTEST_REPORT)[1].line is None
