"""Chat notifiers against a local stand-in that checks what they send: Slack's incoming webhook,
a Matrix homeserver, and a chat webhook fed by HttpStatusPush's body template."""

from __future__ import annotations

import pytest

from ..chat_api import ChatAPI
from ..support import finished_builds, wait_for

PIPELINE = """\
from flowbot import (Pipeline, Worker, Builder, Shell, ForceScheduler, Interpolate, SecretsInDirectory,
                     HttpStatusPush, MatrixNotifier, SlackNotifier)

pipeline = Pipeline(
    workers=[Worker("w1", secret="s")],
    schedulers=[ForceScheduler("force", builders=["pass", "fail"])],
    builders=[
        Builder("pass", workers=["w1"], steps=[Shell("echo fine", name="test")]),
        Builder("fail", workers=["w1"], steps=[
            Shell("echo compiling; echo 'error: <widget.c:3> & it broke' >&2; exit 1", name="compile"),
        ]),
    ],
    secrets=[SecretsInDirectory({secrets!r})],
    reporters=[
        SlackNotifier(Interpolate("%(secret:slack)s"), backoff=0.05),
        MatrixNotifier({api!r}, "!builds:example.org", Interpolate("%(secret:matrix)s"), mode="failing"),
        HttpStatusPush({api!r} + "/webhook", started=False,
                       body={{"content": "{{headline}} {{url}}", "embeds": [{{"title": "{{builder}}",
                             "fields": ["{{result}}", "{{duration}}", "{{properties[owner]}}"]}}]}}),
    ],
    url="https://ci.example.com/",
)
"""


@pytest.fixture
def chat():
    api = ChatAPI(matrix_token="matrix-token")
    yield api
    api.close()


def test_slack_matrix_and_a_templated_webhook_get_each_finished_build(chat, master_factory, worker_factory, tmp_path):
    # Given a master whose Slack webhook URL and Matrix token are secrets
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "slack").write_text(chat.url + "/services/T1/B2/secret")
    (secrets / "matrix").write_text("matrix-token")
    master = master_factory(PIPELINE.format(api=chat.url, secrets=str(secrets)))
    worker_factory(master, "w1", "s")

    # When one build passes and one fails
    master.client.force("pass")
    master.client.force("fail")
    builds = {b["builder"]: b for b in finished_builds(master.client, 2)}

    # Then Slack gets both, as blocks the stand-in accepted, with the page and the failure's log
    slack = wait_for(lambda: len(chat.sent("slack")) == 2 and chat.sent("slack"), 20, "two Slack messages")
    failed = next(m for m in slack if m["text"].startswith("FAILURE"))
    assert failed["text"] == "FAILURE: fail #1"
    title = failed["blocks"][0]["text"]["text"]
    assert f"<https://ci.example.com/#/builds/{builds['fail']['id']}|FAILURE: fail #1>" in title
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in failed["blocks"][1]["fields"]}
    assert fields["*Worker*"] == "w1" and fields["*Took*"].endswith(" s")
    log = failed["blocks"][2]["text"]["text"]
    assert "*compile*" in log and "error: &lt;widget.c:3&gt; &amp; it broke" in log
    passed = next(m for m in slack if m["text"].startswith("SUCCESS"))
    assert len(passed["blocks"]) == 2  # no log for a build that passed

    # And Matrix (mode "failing") gets the failure alone, as a notice in plain text and HTML
    (notice,) = wait_for(lambda: chat.sent("matrix"), 20, "a Matrix message")
    assert notice["msgtype"] == "m.notice"
    assert notice["body"].startswith(f"FAILURE: fail #1 https://ci.example.com/#/builds/{builds['fail']['id']}")
    assert "error: <widget.c:3> & it broke" in notice["body"]
    assert "error: &lt;widget.c:3&gt; &amp; it broke" in notice["formatted_body"]
    assert '<a href="https://ci.example.com/#/builds/' in notice["formatted_body"]
    (matrix,) = [r for r in chat.requests if r["method"] == "PUT"]
    assert matrix["path"].startswith("/_matrix/client/v3/rooms/%21builds%3Aexample.org/send/m.room.message/")

    # And the webhook gets the template filled in for each end
    hooks = wait_for(lambda: len(chat.sent("webhook")) == 2 and chat.sent("webhook"), 20, "two webhook posts")
    by_builder = {h["embeds"][0]["title"]: h for h in hooks}
    assert by_builder["fail"]["content"] == f"FAILURE: fail #1 https://ci.example.com/#/builds/{builds['fail']['id']}"
    result, took, owner = by_builder["pass"]["embeds"][0]["fields"]
    assert (result, owner) == ("SUCCESS", "") and took.endswith(" s")
    # No secret reached the log
    assert "/services/T1/B2/secret" not in master.log() and "matrix-token" not in master.log()
