"""The whole pipelines the README shows are ones a master takes: each is loaded as ``flowbot
checkconfig`` loads it (fragments, with ``...``, and notebook cells are left out)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowbot.config import load_pipeline

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = [
    block
    for block in re.findall(r"^```python\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    if re.search(r"^pipeline = Pipeline\(", block, re.MULTILINE) and "await " not in block and "..." not in block
]


def test_the_readme_shows_its_pipelines():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"pipeline-{n}" for n in range(1, len(BLOCKS) + 1)])
def test_each_pipeline_in_the_readme_checks(block, tmp_path):
    (tmp_path / "pipeline.py").write_text(block)
    pipeline = load_pipeline(tmp_path)
    assert pipeline.builders and pipeline.workers
