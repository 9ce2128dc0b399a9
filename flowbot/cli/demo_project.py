"""The small Python project ``flowbot demo`` builds: a real git repository, made with dulwich.

The demo makes the repository and its commits itself (no git binary needed, as for the master):
an initial commit that the poller's first poll records, then a few commits by different people,
one of which breaks the tests and the next one fixes them.
"""

from __future__ import annotations

from pathlib import Path

#: The project as first committed.
INITIAL = {
    "README.md": "# calc\n\nA calculator, built by flowbot's demo.\n",
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": (
        "import unittest\n\nfrom calc import add\n\n\n"
        "class CalcTest(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
    ),
}

#: (author, message, files) of the commits the demo makes once the poller watches.
COMMITS = [
    (
        "Alice Liddell <alice@example.org>",
        "Add subtraction",
        {
            "calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n",
            "test_calc.py": (
                "import unittest\n\nfrom calc import add, sub\n\n\n"
                "class CalcTest(unittest.TestCase):\n"
                "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
                "    def test_sub(self):\n        self.assertEqual(sub(5, 3), 2)\n"
            ),
        },
    ),
    (
        "Bob Builder <bob@example.org>",
        "Make add faster",
        {
            "calc.py": (
                "def add(a, b):\n    return a | b  # no carries to worry about\n\n\ndef sub(a, b):\n    return a - b\n"
            )
        },
    ),
    (
        "Carol Reviewer <carol@example.org>",
        "Fix add: a | b is not a + b",
        {"calc.py": "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"},
    ),
]


def create(path: Path) -> None:
    """Make the repository with its initial commit on ``main``."""
    from dulwich import porcelain

    path.mkdir(parents=True)
    with porcelain.init(str(path)) as repo:
        repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    commit(path, "flowbot demo <demo@example.org>", "A calculator with tests", INITIAL)


def commit(path: Path, author: str, message: str, files: dict[str, str]) -> str:
    """Write ``files`` and commit them as ``author``; returns the new revision."""
    from dulwich import porcelain

    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    with porcelain.open_repo_closing(str(path)) as repo:
        porcelain.add(repo, [str(path / name) for name in files])
        person = author.encode()
        return porcelain.commit(repo, message=message.encode(), author=person, committer=person).decode()
