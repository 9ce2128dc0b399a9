"""What builds store on the master, as people get it: listed with sizes and digests, downloaded with
the right content type, nothing else on the master's disk reachable, and linked from reports."""

from __future__ import annotations

import hashlib
import http.client
from pathlib import Path

import pytest

from ..chat_api import ChatAPI
from ..support import finished_builds, wait_for
from .test_web import expect, page  # noqa: F401 (fixtures)

PIPELINE = """\
from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, FileUpload, DirectoryUpload, Interpolate,
                     SlackNotifier)

pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["package"])],
    builders=[
        Builder("package", workers=["w1"], steps=[
            Shell("mkdir -p dist/docs/css && printf 'version 1' > dist/app.txt"
                  " && head -c 3000000 /dev/urandom > dist/blob.tar.gz"
                  " && echo '<script>document.title = 1</script>' > dist/docs/index.html"
                  " && echo 'body {{}}' > dist/docs/css/site.css && printf 'x' > 'dist/docs/a b.txt'", name="make"),
            FileUpload("dist/app.txt", "artifacts/latest/app.txt"),
            FileUpload("dist/blob.tar.gz", Interpolate("artifacts/%(prop:buildnumber)s/blob.tar.gz")),
            DirectoryUpload("dist/docs", Interpolate("artifacts/%(prop:buildnumber)s/docs")),
        ]),
    ],
    reporters=[SlackNotifier({slack!r})],
    url="https://ci.example.com/",
)
"""


def get(master, path, headers=None):
    """A GET to the master: status, headers and body."""
    connection = http.client.HTTPConnection("127.0.0.1", master.http_port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


@pytest.fixture
def chat():
    api = ChatAPI()
    yield api
    api.close()


def test_artifacts_are_listed_downloaded_and_linked(master_factory, worker_factory, chat):
    # Given a build that uploads a file, a large one and a directory
    master = master_factory(PIPELINE.format(slack=chat.url + "/services/T/B/x"))
    worker = worker_factory(master, "w1", "s")
    master.client.force("package")
    (build,) = finished_builds(master.client, 1, timeout=60)
    assert build["result"] == "SUCCESS"

    # Then the API lists each file with its size, digest and step, as the worker had it
    listed = master.client.request("GET", f"/api/builds/{build['id']}/artifacts")["artifacts"]
    dist = worker.basedir / "package" / "build" / "dist"
    expected = {
        "latest/app.txt": dist / "app.txt",
        "1/blob.tar.gz": dist / "blob.tar.gz",
        "1/docs/a b.txt": dist / "docs" / "a b.txt",
        "1/docs/css/site.css": dist / "docs" / "css" / "site.css",
        "1/docs/index.html": dist / "docs" / "index.html",
    }
    assert [a["path"] for a in listed] == list(expected)
    for artifact in listed:
        data = expected[artifact["path"]].read_bytes()
        assert (artifact["size"], artifact["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert artifact["available"] is True
    assert [(a["step"], a["step_name"]) for a in listed] == [(1, "upload"), (2, "upload_2")] + [
        (3, "upload directory")
    ] * 3

    # And each downloads whole, with its content type, length and digest
    by_path = {a["path"]: a for a in listed}
    status, headers, body = get(master, by_path["1/blob.tar.gz"]["url"])
    assert status == 200 and body == expected["1/blob.tar.gz"].read_bytes()
    assert headers["Content-Type"] == "application/gzip" and "Content-Encoding" not in headers
    assert headers["Content-Length"] == str(len(body)) and headers["ETag"] == f'"{by_path["1/blob.tar.gz"]["sha256"]}"'
    status, headers, body = get(master, by_path["1/docs/a b.txt"]["url"] + "?download=1")
    assert (status, body) == (200, b"x") and headers["Content-Type"] == "text/plain"
    assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''a%20b.txt"
    # An HTML report is shown in a sandbox: its scripts never run as the master's page
    status, headers, body = get(master, by_path["1/docs/index.html"]["url"])
    assert status == 200 and headers["Content-Type"] == "text/html" and b"<script>" in body
    assert headers["Content-Security-Policy"] == "sandbox" and headers["X-Content-Type-Options"] == "nosniff"
    # (another file's digest is no match)
    assert get(master, by_path["1/docs/css/site.css"]["url"], {"If-None-Match": headers["ETag"]})[0] == 200
    etag = f'"{by_path["1/docs/css/site.css"]["sha256"]}"'
    assert get(master, by_path["1/docs/css/site.css"]["url"], {"If-None-Match": etag})[0] == 304

    # And nothing else on the master's disk is reachable, whatever the URL says
    (master.basedir / "artifacts" / "1" / "secret.txt").write_text("not stored by a build")
    for path in ("1/secret.txt", "../pipeline.py", "%2e%2e/pipeline.py", "1/docs/../../../pipeline.py", "1/docs"):
        status, _, body = get(master, f"/api/builds/{build['id']}/artifacts/{path}")
        assert status == 404 and b"pipeline = Pipeline" not in body, path

    # And the build's report links each file
    (message,) = wait_for(lambda: chat.sent("slack"), 20, "the Slack message")
    links = next(b for b in message["blocks"] if b.get("text", {}).get("text", "").startswith("*Artifacts*"))["text"][
        "text"
    ]
    assert f"<https://ci.example.com/api/builds/{build['id']}/artifacts/1/blob.tar.gz|1/blob.tar.gz> (3.0 MB)" in links

    # When a later build stores another file at the same place
    master.client.force("package")
    finished_builds(master.client, 2, timeout=60)

    # Then the first build's file is listed as replaced, and its URL says so (410), not the new file
    first = master.client.request("GET", f"/api/builds/{build['id']}/artifacts")["artifacts"]
    assert [a["available"] for a in first] == [False, True, True, True, True]
    status, _, body = get(master, first[0]["url"])
    assert status == 410 and b"replaced" in body


def test_the_build_page_lists_the_artifacts_with_links(master_factory, worker_factory, chat, page, expect):  # noqa: F811
    master = master_factory(PIPELINE.format(slack=chat.url + "/services/T/B/x"))
    worker_factory(master, "w1", "s")
    master.client.force("package")
    (build,) = finished_builds(master.client, 1, timeout=60)

    page.goto(f"{master.url}/#/builds/{build['id']}")
    rows = page.locator("table.artifacts tr.artifact")
    expect(rows).to_have_count(5)
    expect(rows.first).to_contain_text("latest/app.txt")
    expect(rows.first).to_contain_text("9 B")
    expect(rows.first).to_contain_text("step 2 upload")
    expect(rows.nth(1)).to_contain_text("3.0 MB")
    link = rows.nth(1).locator("a.mono")
    expect(link).to_have_attribute("href", f"/api/builds/{build['id']}/artifacts/1/blob.tar.gz")
    listed = master.client.request("GET", f"/api/builds/{build['id']}/artifacts")["artifacts"]
    expect(rows.nth(1).locator("[title^='SHA-256']")).to_have_attribute("title", f"SHA-256 {listed[1]['sha256']}")
    with page.expect_download() as download:
        rows.nth(2).get_by_role("link", name="download").click()
    assert download.value.suggested_filename == "a b.txt"
    assert Path(download.value.path()).read_bytes() == b"x"
