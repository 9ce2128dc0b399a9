"""A worker image made here, with no registry: a minimal Debian root (debootstrap) imported into the
Docker daemon once, and a layer on it holding the worker package and its wheels from PyPI.

The image is tagged with a hash of what goes into it, so a run builds it once and later runs (and the
benchmarks) reuse it until the worker package changes. ``python -m tests.docker_image`` builds it and
prints its tag.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "worker"

#: The Debian root: bookworm's Python 3.11, nothing else.
BASE_IMAGE = "flowbot-test-base:bookworm"
#: The worker image's name; its tag is the hash of its contents.
IMAGE = "flowbot-worker-test"

DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY site /opt/flowbot-worker
ENV PYTHONPATH=/opt/flowbot-worker
WORKDIR /build
"""

#: The worker's dependencies, as wheels for the image's Python (see worker/pyproject.toml).
REQUIREMENTS = ["pyzmq>=25.1", "dulwich>=0.22"]


def docker_problem() -> str | None:
    """Why the Docker daemon cannot be used, or None when it answers."""
    if shutil.which("docker") is None:
        return "the docker command is not installed (apt-get install docker.io)"
    done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"the Docker daemon does not answer: {done.stderr.strip()[:200]}"
    return None


def _has(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def _run(*argv: str, **options) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, **options)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} ... failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def content_hash() -> str:
    digest = hashlib.sha256(DOCKERFILE.encode())
    digest.update("\n".join(REQUIREMENTS).encode())
    for path in sorted(WORKER.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".toml"):
            digest.update(str(path.relative_to(WORKER)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _base() -> None:
    """Debootstrap bookworm with Python and import it (a minute or two, once per Docker host)."""
    with tempfile.TemporaryDirectory(prefix="flowbot-debootstrap-") as scratch:
        root = Path(scratch) / "root"
        _run("debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(root))
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            _run("docker", "import", "--change", 'CMD ["python3"]', "-", BASE_IMAGE, stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()


def worker_image() -> str:
    """The tag of the worker image, built if this Docker host does not have it yet."""
    tag = f"{IMAGE}:{content_hash()}"
    if _has(tag):
        return tag
    with open(Path(tempfile.gettempdir()) / "flowbot-worker-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run or a benchmark may be building it
        if _has(tag):
            return tag
        if not _has(BASE_IMAGE):
            _base()
        with tempfile.TemporaryDirectory(prefix="flowbot-image-") as context:
            site = Path(context) / "site"
            _run(
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(site),
                "--only-binary=:all:",
                "--platform",
                "manylinux2014_x86_64",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                *REQUIREMENTS,
            )
            shutil.copytree(
                WORKER / "flowbot_worker", site / "flowbot_worker", ignore=shutil.ignore_patterns("__pycache__")
            )
            (Path(context) / "Dockerfile").write_text(DOCKERFILE)
            _run("docker", "build", "--quiet", "-t", tag, context, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return tag


if __name__ == "__main__":
    print(worker_image())
