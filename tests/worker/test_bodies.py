"""The bodies of the command messages (``flowbot_worker/bodies.py``): each encodes to what the other
end decodes, and a body that names no command by a string id is refused as the protocol's error."""

from __future__ import annotations

import pytest
from flowbot_worker.bodies import CommandResult, Finished, Interrupt, StartCommand
from flowbot_worker.errors import ProtocolError


@pytest.mark.parametrize(
    "body",
    [
        StartCommand("r1.b1.s0.c1", "shell", {"command": "make", "timeout": 60}),
        Interrupt("r1.b1.s0.c1", "stopped by alice", 2.5),
        Finished("r1.b1.s0.c1", 0, None, "", 1.25, {"got_revision": "abc"}, {"stdout": 10, "stderr": 0}),
        Finished("r1.b1.s0.c1", None, "timeout", "killed after 60 s", 60.0),
    ],
)
def test_each_body_decodes_to_what_was_encoded(body):
    assert type(body).decode(body.encode()) == body


@pytest.mark.parametrize("kind", [StartCommand, Interrupt, Finished])
@pytest.mark.parametrize("cmd_id", [None, 7, ["c1"], {"id": "c1"}])
def test_a_body_naming_its_command_by_anything_but_a_string_is_refused(kind, cmd_id):
    with pytest.raises(ProtocolError) as refused:
        kind.decode({"cmd_id": cmd_id, "name": "shell", "args": {}, "rc": 0})
    assert refused.value.reason == "bad-body"


def test_a_start_command_without_arguments_is_refused():
    with pytest.raises(ProtocolError, match="no args object"):
        StartCommand.decode({"cmd_id": "c1", "name": "shell", "args": "make"})


def test_a_finished_command_still_ends_when_a_field_it_can_do_without_is_wrong():
    # Given a result whose fields are of the wrong kinds, but which names its command
    finished = Finished.decode({"cmd_id": "c1", "rc": "0", "reason": 3, "elapsed": "1.5", "data": [1], "offsets": 2})

    # Then the command ends, with what could not be read left out
    assert finished.result() == CommandResult(None, None, "", 0.0, data={})
    assert Interrupt.decode({"cmd_id": "c1", "grace": "soon"}).grace == Interrupt("c1").grace
