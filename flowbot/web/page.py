"""The web page and the badges: what people look at, served by the master itself.

The page is one HTML file, one hand-written JavaScript module and one stylesheet, shipped in
``www/`` as package data: nothing to build at install time. Static files carry a content hash in
their URL and are cached for good; the page itself is never cached, so an upgrade shows at once.
The page draws everything with DOM calls that set text, never HTML, so nothing a build prints can
run in it, and its Content-Security-Policy allows only the master's own script and style.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ..errors import NotFound
from .api import ApiHandler

#: Where the page's files are.
WWW = Path(__file__).parent / "www"

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class PageHandler(ApiHandler):
    """``/``: the web page (a single page: views are chosen by the URL's fragment)."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("Content-Security-Policy", _CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")

    def prepare(self) -> None:
        pass  # the page itself holds no data; its API calls are checked

    def get(self) -> None:
        self.render("index.html", title="flowbot")


#: Badge colours by result (shields.io's palette, so badges sit well next to others).
COLOURS = {
    "SUCCESS": "#4c1",
    "WARNINGS": "#dfb317",
    "FAILURE": "#e05d44",
    "EXCEPTION": "#9f4bbf",
    "RETRY": "#fe7d37",
    "CANCELLED": "#9f9f9f",
    "SKIPPED": "#9f9f9f",
}


class BadgeHandler(ApiHandler):
    """``/badges/{builder}.svg``: the result of the builder's last finished build (``?label=`` to rename)."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "image/svg+xml; charset=utf-8")
        self.set_header("Cache-Control", "no-cache, max-age=0")  # GitHub's image proxy honours this

    async def get(self, builder: str) -> None:
        if self.reads.pipeline().builder(builder) is None:
            raise NotFound(f"no builder named {builder!r}")
        result = await self.reads.store.builds.last_result(builder)
        label = self.get_query_argument("label", builder)
        value = result.name.lower() if result is not None else "no builds"
        self.finish(badge(label, value, COLOURS.get(result.name if result else "", "#9f9f9f")))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        super().write_error(status_code, **kwargs)


def _text_width(text: str) -> float:
    """About how wide ``text`` is in 11 px Verdana (no font metrics here; close is enough)."""
    width = 0.0
    for ch in text:
        if ch in "ijlt.,:;|!'I1 ()[]f":
            width += 4.0
        elif ch in "mwMW@%":
            width += 10.5
        elif ch.isupper() or ch.isdigit():
            width += 7.5
        else:
            width += 6.8
    return width


def badge(label: str, value: str, colour: str) -> str:
    """A flat two-part badge, like the ones shields.io draws."""
    left, right = _text_width(label) + 10, _text_width(value) + 10
    total = left + right
    title = escape(f"{label}: {value}", {'"': "&quot;"})
    label, value = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total:.0f}" height="20" role="img" aria-label="{title}">'
        f"<title>{title}</title>"
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        '<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{total:.0f}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left:.0f}" height="20" fill="#555"/>'
        f'<rect x="{left:.0f}" width="{right:.0f}" height="20" fill="{colour}"/>'
        f'<rect width="{total:.0f}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{label}</text>'
        f'<text x="{left / 2:.1f}" y="14">{label}</text>'
        f'<text x="{left + right / 2:.1f}" y="15" fill="#010101" fill-opacity=".3">{value}</text>'
        f'<text x="{left + right / 2:.1f}" y="14">{value}</text></g></svg>'
    )
