"""``docs/checkconfig.md`` says what ``flowbot checkconfig`` answers to each kind of broken pipeline:
each row is written into the sample, in a real master directory, and checked by the CLI's own entry
point; its message must be the one the table shows, word for word."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowbot.cli.main import main
from flowbot.errors import ConfigError

DOC = Path(__file__).parent.parent / "docs" / "checkconfig.md"
TEXT = DOC.read_text()

#: A code span as the table writes one: `code`, or `` code with `backticks` ``.
_SPAN = re.compile(r"^`([^`].*?)`$|^`` (.*?) ``$")


def _code(cell: str) -> str:
    match = _SPAN.match(cell.strip())
    assert match, f"not a code span: {cell!r}"
    return match.group(1) if match.group(1) is not None else match.group(2)


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TEXT, re.S)


SAMPLE = _blocks("python")[0]
ROWS = [
    (int(number), mistake.strip(), int(line), _code(written), _code(says))
    for number, mistake, line, written, says in re.findall(
        r"^\| (\d+) \| (.*?) \| (\d+) \| (`.*?`) \| (`.*`) \|$", TEXT, re.M
    )
]


def checkconfig(basedir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``flowbot checkconfig`` on ``basedir``: its exit status and what it printed, the
    directory's path written ``MASTER``."""
    try:
        main(["checkconfig", str(basedir)])
        status = 0
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, (out + err).strip().replace(str(basedir), "MASTER")


def with_line(number: int, code: str) -> str:
    lines = SAMPLE.splitlines()
    if number == len(lines) + 1:
        lines.append(code)
    else:
        lines[number - 1] = code
    return "\n".join(lines) + "\n"


def test_the_table_shows_at_least_forty_kinds_numbered_in_order() -> None:
    assert len(ROWS) >= 40
    assert [row[0] for row in ROWS] == list(range(1, len(ROWS) + 1))
    assert len({row[3] for row in ROWS}) == len(ROWS), "each row shows a mistake of its own"


def test_the_sample_checks_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pipeline.py").write_text(SAMPLE)

    assert checkconfig(tmp_path, capsys) == (0, "MASTER/pipeline.py: OK: 2 workers, 1 scheduler, 1 builder")


@pytest.mark.parametrize(("number", "mistake", "line", "written", "says"), ROWS, ids=[row[1] for row in ROWS])
def test_each_broken_pipeline_gets_the_message_the_table_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], number: int, mistake: str, line: int, written: str, says: str
) -> None:
    # Given the sample with one line written as the row says, in a master directory
    (tmp_path / "pipeline.py").write_text(with_line(line, written))

    # When it is checked, then checkconfig fails with the row's message
    assert checkconfig(tmp_path, capsys) == (1, f"flowbot checkconfig: MASTER/{says}")


def test_an_insecure_worker_passes_with_the_warning_the_doc_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    insecure = 'workers = [Worker("w1", insecure=True), Worker("w2", secret="s2")]'
    (tmp_path / "pipeline.py").write_text(with_line(3, insecure))

    status, output = checkconfig(tmp_path, capsys)

    assert status == 0
    assert f"```\n{output}\n```" in TEXT


def test_the_custom_step_of_the_doc_declares_its_arguments() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_blocks("python")[1], str(DOC), "exec"), namespace)

    deploy = namespace["Deploy"]("production", timeout=60)  # type: ignore[operator]
    assert (deploy.target, deploy.timeout) == ("production", 60)
    with pytest.raises(ConfigError) as refused:
        namespace["Deploy"](42)  # type: ignore[operator]
    assert f"`Deploy(42)` is then refused at its line: `{refused.value.problem}`." in TEXT
    assert refused.value.filename == __file__
