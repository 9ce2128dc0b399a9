"""``History.build``: one build's steps, logs and test results as frames, drawn as the web page draws it."""

from __future__ import annotations

import pytest

from flowbot.errors import NotFound


def test_a_failed_build_has_its_steps_logs_and_tests_as_frames(history):
    history, known = history
    report = history.build(known.builds["unit#2"])

    assert report.build["builder"] == "unit" and report.build["number"] == 2 and report.build["result"] == "FAILURE"
    # Steps numbered from 1, as the page shows them
    assert report.steps[["number", "name", "result"]].astype(str).values.tolist() == [
        ["1", "compile", "SUCCESS"],
        ["2", "test", "FAILURE"],
    ]
    assert report.failed_step == 2
    assert report.log(2) == "pytest -q\nrunning tests\nSegmentation fault (core dumped)\n1 failed"
    assert report.log("test") == report.log(2)
    assert report.logs[["line", "stream"]].values.tolist()[:2] == [[1, "header"], [2, "stdout"]]
    # Failures first
    assert report.tests[["name", "outcome"]].astype(str).values.tolist() == [
        ["test_parse", "failed"],
        ["test_network", "passed"],
    ]
    html = report._repr_html_()
    assert "unit #2" in html and "FAILURE" in html and "test_parse" in html and "Segmentation fault" in html


def test_a_build_that_does_not_exist_says_so(history):
    history, _ = history
    with pytest.raises(NotFound, match="no build with id 999"):
        history.build(999)
