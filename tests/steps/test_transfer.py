"""What checkconfig says of transfers: paths on the master that leave the artifacts directory, as
plain text, and artifacts directories that would hold the master's own files."""

from __future__ import annotations

import textwrap

import pytest

from flowbot.config import load_pipeline
from flowbot.errors import ConfigErrors

PIPELINE = """\
from flowbot import Builder, FileDownload, FileUpload, ForceScheduler, Interpolate, Pipeline, Shell, Worker

pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],{artifacts}
    schedulers=[ForceScheduler("force", builders=["b"])],
    builders=[Builder("b", workers=["w1"], steps=[
        FileUpload("dist/app.tar.gz", "artifacts/app.tar.gz"),
        FileUpload("dist/app.tar.gz", Interpolate("artifacts/%(prop:branch)s.tar.gz")),
        FileUpload("dist/app.tar.gz", "/srv/www/app.tar.gz", name="publish"),
        FileDownload("tools/tool.bin", "tool.bin", name="tool"),
    ])],
)
"""


def problems(tmp_path, artifacts: str = "") -> list[str]:
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE.format(artifacts=artifacts)))
    with pytest.raises(ConfigErrors) as refused:
        load_pipeline(tmp_path)
    return [str(error) for error in refused.value.errors]


def test_paths_written_outside_the_artifacts_directory_fail_checkconfig_at_their_line(tmp_path):
    found = problems(tmp_path)
    root = tmp_path / "artifacts"
    assert found == [
        f"{tmp_path / 'pipeline.py'}:9: FileUpload 'publish': '/srv/www/app.tar.gz' leads out of the master's "
        f"artifacts directory {root}: transfers on the master stay inside it (Pipeline(artifacts=...) names another)",
        f"{tmp_path / 'pipeline.py'}:10: FileDownload 'tool': 'tools/tool.bin' leads out of the master's "
        f"artifacts directory {root}: transfers on the master stay inside it (Pipeline(artifacts=...) names another)",
    ]


def test_an_artifacts_directory_that_holds_the_masters_own_is_refused(tmp_path):
    for artifacts in (".", "..", str(tmp_path.parent)):
        (found,) = problems(tmp_path, f"\n    artifacts={artifacts!r},")
        assert f"artifacts {artifacts!r} holds the master's directory {tmp_path}" in found, found
    (found,) = problems(tmp_path, "\n    artifacts=5,")
    assert found.endswith("artifacts must be the path of a directory; got 5")


def test_an_artifacts_directory_elsewhere_takes_absolute_paths_in_it(tmp_path):
    found = problems(tmp_path, '\n    artifacts="/srv/www",')
    # The paths in the master's own artifacts/ are outside it now; the absolute one in it is not
    assert [line.split(": ", 2)[1] for line in found] == ["FileUpload 'upload'", "FileDownload 'tool'"]
