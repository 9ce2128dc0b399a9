"""Rendering: Interpolate's keys and modifiers, Property, @renderer, secrets."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from flowbot import ConfigError, Interpolate, Properties, Property, renderer
from flowbot.config import load_source
from flowbot.properties import RenderError, render
from flowbot.secrets import SecretsInDirectory, SecretsInEnvironment, lookup, redact, redact_value


class FakeBuild:
    def __init__(self, **props: Any):
        self.properties = Properties()
        self.properties.update(props, "Test")
        self.secrets_used: list[str] = []

    def sourcestamp(self, codebase: str) -> dict[str, Any] | None:
        stamps = {
            "": {"branch": "main", "revision": "abc123", "repository": "repo.git", "project": "p", "codebase": ""},
            "lib": {"branch": "v2", "revision": None, "repository": "lib.git", "project": "p", "codebase": "lib"},
        }
        return stamps.get(codebase)

    def worker_info(self) -> dict[str, Any]:
        return {"os": "posix", "name": "w1"}

    def secret(self, name: str) -> str:
        if name != "token":
            raise KeyError(name)
        self.secrets_used.append(name)
        return "t0k3n"


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("v=%(prop:version)s", "v=1.2"),
        ("%(prop:missing)s|", "|"),
        ("%(prop:none)s|", "|"),
        ("%(prop:missing:-dflt)s", "dflt"),
        ("%(prop:none:-dflt)s", "dflt"),
        ("%(prop:empty:-dflt)s|", "|"),
        ("%(prop:empty:~dflt)s", "dflt"),
        ("%(prop:version:~dflt)s", "1.2"),
        ("%(prop:version:+set)s/%(prop:missing:+set)s", "set/"),
        # :? asks whether a value is there (an empty string is), :#? whether it is true
        ("%(prop:flag:?|yes|no)s %(prop:empty:?|yes|no)s %(prop:missing:?|yes|no)s", "yes yes no"),
        ("%(prop:flag:#?|yes|no)s %(prop:empty:#?|yes|no)s %(prop:missing:#?|yes|no)s", "yes no no"),
        ("%(prop:none:?|yes|no)s %(prop:empty:+set)s", "no set"),
        ("%(prop:flag:#?:a|b:c)s", "a|b"),  # any delimiter but "("
        # A default or an alternative is a format itself, nested as deep as needed
        ("%(prop:missing:-%(prop:version)s)s", "1.2"),
        ("%(prop:missing:-%(prop:none:~%(src::branch)s)s)s", "main"),
        ("%(prop:version:?|v(%(prop:version)s)|none)s", "v(1.2)"),
        ("%(prop:empty:#?|%(prop:empty)s|%(kw:extra:-)s)s", "kw!"),
        ("%(src::branch)s@%(src::revision)s %(src:lib:repository)s", "main@abc123 lib.git"),
        ("%(src:lib:revision:-HEAD)s", "HEAD"),
        ("%(worker:os)s/%(worker:name)s", "posix/w1"),
        ("%(kw:extra)s", "kw!"),
        ("100%% %(prop:version)s", "100% 1.2"),
    ],
)
def test_interpolate_speaks_buildbots_keys_and_modifiers(fmt: str, expected: str) -> None:
    build = FakeBuild(version="1.2", empty="", none=None, flag=True)
    assert Interpolate(fmt, extra="kw!").render(build) == expected


@pytest.mark.parametrize(
    ("fmt", "problem"),
    [
        ("%(nope:x)s", "unknown key 'nope:x'"),
        ("%(version)s", "unknown key 'version'"),
        ("%(prop:x:#|yes|no)s", "unknown modifier :#|yes|no"),
        ("%(prop:x:*y)s", "unknown modifier :*y"),
        ("%(prop:x:)s", "unknown modifier :;"),
        ("%(prop:x:?|yes)s", "needs two alternatives"),
        ("%(prop:x:?(a(b)s", "incomplete format key"),
        ("%(prop:a b)s", "a prop: name is made of"),
        ("%(src:lib)s", "needs a codebase and an attribute"),
        ("%(src::sha)s", "the attribute one of"),
        ("%(prop:x)", "incomplete format"),
        ("%(prop:x:-100%)s", "incomplete format"),
        ("%(prop:x:-%(prop:y:?|a)s)s", "'prop:y:?|a': a :? or :#? modifier needs two alternatives"),
        ("echo %s", "a %s placeholder without an argument"),
    ],
)
def test_a_format_interpolate_cannot_read_fails_at_the_line_that_wrote_it(fmt: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Interpolate(fmt)
    assert (caught.value.filename, caught.value.lineno) == (__file__, caught.tb.tb_lineno)
    assert problem in caught.value.problem and repr(fmt) in caught.value.problem


def test_positional_arguments_must_match_the_format() -> None:
    with pytest.raises(ConfigError, match="either positional"):
        Interpolate("%s %(prop:x)s", "a")
    with pytest.raises(ConfigError, match="not all arguments converted"):
        Interpolate("%s", "a", "b")
    assert Interpolate("%s-%d", Property("version"), 3).render(FakeBuild(version="1.2")) == "1.2-3"


def test_a_bad_format_in_a_pipeline_file_names_its_line() -> None:
    source = textwrap.dedent("""\
        from flowbot import Interpolate, Shell

        steps = [
            Shell(Interpolate("make VERSION=%(prop:version)s")),
            Shell(Interpolate("deploy %(prop:target:#?|prod|staging)s %(prop:tag:?yes|no)s")),
        ]
    """)
    with pytest.raises(ConfigError) as caught:
        load_source(source, "/masters/demo/pipeline.py")
    assert (caught.value.filename, caught.value.lineno) == ("/masters/demo/pipeline.py", 5)
    assert "'prop:tag:?yes|no': a :? or :#? modifier needs two alternatives" in str(caught.value)


def test_secrets_render_and_a_missing_one_is_an_error() -> None:
    build = FakeBuild()
    assert Interpolate("Bearer %(secret:token)s").render(build) == "Bearer t0k3n"
    assert build.secrets_used == ["token"]
    with pytest.raises(RenderError, match="no secret named 'other'"):
        Interpolate("%(secret:other)s").render(build)


def test_renderables_nest_in_lists_dicts_positional_args_and_functions() -> None:
    build = FakeBuild(version="1.2", jobs=4)

    @renderer
    def doubled(b: FakeBuild) -> int:
        return b.properties["jobs"] * 2

    value = {"cmd": ["make", Interpolate("-j%s", doubled)], Interpolate("%(prop:version)s"): Property("nope", "d")}
    assert render(value, build) == {"cmd": ["make", "-j8"], "1.2": "d"}
    assert Property("empty", "d", default_when_false=True).render(FakeBuild(empty="")) == "d"


def test_properties_remember_where_they_came_from() -> None:
    props = Properties()
    props.set("version", "1.2", "SetProperty Step")
    props.update({"a": 1}, "Builder")
    assert props.with_sources() == {"version": ["1.2", "SetProperty Step"], "a": [1, "Builder"]}
    assert props.source("a") == "Builder" and props.get("zzz") is None and len(props) == 2


def test_secret_providers_and_redaction(tmp_path, monkeypatch) -> None:
    (tmp_path / "db_password").write_text("hunter2\n")
    monkeypatch.setenv("FB_SECRET_api", "k-123")
    providers = [SecretsInDirectory(tmp_path), SecretsInEnvironment("FB_SECRET_")]
    assert lookup(providers, "db_password") == "hunter2"
    assert lookup(providers, "api") == "k-123"
    with pytest.raises(KeyError):
        lookup(providers, "../etc/passwd")
    assert redact("login hunter2 and k-123", {"hunter2", "k-123"}) == "login <secret> and <secret>"


def test_a_secret_of_several_lines_is_hidden_whole_and_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nAAAA1111\nBBBB2222\n-----END KEY-----"
    # Whole, where it comes whole
    assert redact(f"key:\n{key}\ndone", {key}) == "key:\n<secret>\ndone"
    # And each of its lines where they come alone (output cut in pieces, a tail of the file)
    assert redact("BBBB2222", {key}) == "<secret>"
    assert redact("x AAAA1111 y\n\n", {key}) == "x <secret> y\n\n"
    # Values of properties, nested in lists and mappings, likewise
    assert redact_value({"auth": ["Bearer AAAA1111", 3]}, {key}) == {"auth": ["Bearer <secret>", 3]}
