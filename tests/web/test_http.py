"""The master's HTTP application: a request reaches the handler its route table gives it."""

from __future__ import annotations

import tornado.httputil
import tornado.web

import flowbot
from flowbot import Builder, ForceScheduler, Pipeline, Shell, Worker
from flowbot.web.http import _literal_routes, make_app


class First(tornado.web.RequestHandler):
    pass


class Second(tornado.web.RequestHandler):
    pass


def test_a_plain_path_goes_to_the_first_rule_that_matches_it():
    # Given a plain path that a pattern before it also matches, and plain paths that none does
    app = tornado.web.Application(
        [(r"/one", First), (r"/api/([^/]+)", First), (r"/api/changes", Second), (r"/two/?", Second), (r"/ok", Second)]
    )

    # When the plain paths are looked up ahead of the rules
    literal = _literal_routes(app.wildcard_router.rules)

    # Then only those no earlier rule matches are, each with its own handler; patterns are not
    assert literal == {"/one": (First, {}), "/ok": (Second, {})}


async def test_each_plain_path_of_the_api_reaches_the_handler_the_rules_give(tmp_path):
    pipeline = Pipeline(
        workers=[Worker("w1", secret="s")],
        schedulers=[ForceScheduler("force", builders=["b"])],
        builders=[Builder("b", workers=["w1"], steps=[Shell("true")])],
    )
    master = flowbot.Master(pipeline, db=f"sqlite:///{tmp_path / 'm.db'}", http=None)
    await master.start()
    try:
        app = make_app(master.web_services())
    finally:
        await master.stop()
    literal = _literal_routes(app.wildcard_router.rules)
    assert "/api/changes" in literal and "/api/builds" in literal

    for path, (handler, kwargs) in literal.items():
        # When the rules are tried in order for the path, as Tornado does
        start = tornado.httputil.RequestStartLine("GET", path, "HTTP/1.1")
        request = tornado.httputil.HTTPServerRequest(
            start_line=start, headers=tornado.httputil.HTTPHeaders({"Host": "127.0.0.1"})
        )
        for rule in app.wildcard_router.rules:
            if rule.matcher.match(request) is not None:
                break

        # Then the first that matches is the one looked up
        assert (rule.target, rule.target_kwargs or {}) == (handler, kwargs), path
