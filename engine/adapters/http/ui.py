"""The web UI: the SLO list at `/`, a page per SLO at `/slo/{name}`, `/login`, `/static/`.

Server-rendered HTML (templates in `engine/data/ui/`, package data) that reads like a
report without JavaScript, plus two small scripts that keep it live: `list.js` polls
`v1/summary` (engine.adapters.http.summary: the list's numbers in columns, encoded
once per evaluation whoever asks) and redraws the rows, with a filter and sortable
columns; `slo.js` draws the charts of `v1/slos/{name}/history` with uPlot (vendored
under `engine/data/ui/vendor/`, MIT, its license beside it) and fills the alerts,
incidents, changes, corrections and gate sections from their routes. Nothing is
fetched from anywhere but this server (the Content-Security-Policy says so to the
browser), and no build step exists.

Paths. Every link and fetch is relative, so the UI works unchanged behind a reverse
proxy that serves it under a prefix and strips it (`location /burnrate/ { proxy_pass
http://engine:8080/; }`); the proxy should also send `X-Forwarded-Prefix: /burnrate`,
which the server uses where a relative path cannot do: the login cookie's `Path` and
the redirects to and from the login page. A prefix that is not a plain path
(`/segment/...` of letters, digits and `._~-`) is ignored.

Auth. With a token configured, `/login` (a form taking the token) and `/static/` are
the only UI paths open without it. A good token sets the cookie `burnrate_token`
(HttpOnly, SameSite=Strict, Secure when the request came over TLS or the proxy says
`X-Forwarded-Proto: https`, Path the prefix) which the server accepts for GET and HEAD
(engine.adapters.http.auth): the pages and their fetches are reads. A page
asked for without it redirects to the login page; a wrong token answers the form again
with 401 (logged as the auth middleware logs a refusal, within its per-minute limit).
The cookie ends with the browser session.
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections.abc import Iterable
from importlib import resources
from string import Template
from typing import Final
from urllib.parse import quote

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from engine.adapters.http.api import SloApi
from engine.adapters.http.auth import COOKIE_NAME, BearerAuth
from engine.adapters.http.summary import SummaryApi, SummaryRow
from engine.core.durations import format_duration
from engine.core.evaluator import Evaluator

__all__ = ["ASSETS", "Ui", "forwarded_prefix", "policy_tables"]

log = logging.getLogger("burnrate.adapters.http.ui")

ASSETS: Final = {
    "ui.css": "text/css",
    "list.js": "text/javascript",
    "slo.js": "text/javascript",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
    "vendor/uPlot.LICENSE": "text/plain",
}
"""The files under `/static/`, as package data under engine/data/ui/."""

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
"""uPlot positions its legend and cursor with inline style attributes; nothing else is
inline, and nothing comes from elsewhere."""

MAX_LOGIN_BYTES: Final = 4096
_PREFIX_RE: Final = re.compile(r"(?:/[A-Za-z0-9._~-]+)*")
_PAGES: Final = ("/", "/slo/")


def forwarded_prefix(request: web.Request) -> str:
    """The path prefix a proxy serves the UI under (`X-Forwarded-Prefix`), '' for none."""
    prefix = request.headers.get("X-Forwarded-Prefix", "").strip().rstrip("/")
    return prefix if _PREFIX_RE.fullmatch(prefix) else ""


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _data(name: str) -> bytes:
    return resources.files("engine").joinpath("data", "ui", name).read_bytes()


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _percent(ratio: float | None, digits: int = 2) -> str:
    return "no data" if ratio is None else f"{ratio * 100:.{digits}f}%"


def _rate(x: float | None) -> str:
    return "\u2013" if x is None else f"{x:.2f}"


def _duration(s: float | None) -> str:
    """Time to exhaustion to two units at most (`3d4h`, `5h12m`, `40s`)."""
    if s is None:
        return "\u2013"
    if s <= 0:
        return "spent"
    for size in (86400, 3600, 60):
        if s >= size:
            unit = size // 24 if size == 86400 else size // 60
            return format_duration(math.floor(s / unit) * unit)
    return format_duration(math.ceil(s))


def slo_href(name: str, group: str | None) -> str:
    """The SLO page's path relative to the list page."""
    href = "slo/" + quote(name, safe="")
    return href if group is None else f"{href}?group={quote(group, safe='')}"


PolicyTables = tuple[list[list[dict[str, object]]], dict[str, int]]


def policy_tables(evaluators: Iterable[Evaluator]) -> PolicyTables:
    """The distinct policies (rows with their factors) of the SLOs of `evaluators`, and
    each SLO's: what the list page shows beside the burn rates."""
    policies: dict[tuple[tuple[str, str, str, float], ...], int] = {}
    policy_of: dict[str, int] = {}
    for ev in evaluators:
        for i, name in enumerate(ev.names):
            if name in policy_of:
                continue
            key = tuple(_policy_rows(ev, i))
            policy_of[name] = policies.setdefault(key, len(policies))
    policies_json: list[list[dict[str, object]]] = [
        [{"severity": s, "long": lo, "short": sh, "factor": f} for s, lo, sh, f in key]
        for key in policies
    ]
    return policies_json, policy_of


def _policy_rows(ev: Evaluator, column: int) -> list[tuple[str, str, str, float]]:
    return [
        (
            row.severity,
            format_duration(row.long_s),
            format_duration(row.short_s),
            round(float(ev.factor[column, r]), 4),
        )
        for r, row in enumerate(ev.rows)
        if ev.row_mask[column, r]
    ]


class Ui:
    """The pages and assets; `auth` decides whether the login page is needed at all."""

    def __init__(
        self, api: SloApi, summary: SummaryApi, auth: BearerAuth, refresh_s: float = 2.0
    ) -> None:
        self.api = api
        self.summary = summary
        self._load(auth, refresh_s)
        self._policies_json, self._policy_of = policy_tables([api.evaluator])

    def _load(self, auth: BearerAuth, refresh_s: float) -> None:
        """What every page needs: the templates, the assets, the auth."""
        self.auth = auth
        self.refresh_s = refresh_s
        self._assets = {name: (_data(name), ctype) for name, ctype in ASSETS.items()}
        self._templates = {
            name: Template(_data(f"{name}.html").decode("utf-8"))
            for name in ("list", "slo", "login")
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._list)
        app.router.add_get("/slo/{name}", self._slo)
        app.router.add_get("/login", self._login_form)
        app.router.add_post("/login", self._login)
        app.router.add_get("/static/{path:.+}", self._static)

    def middleware(self) -> Middleware:
        """Outside the auth middleware: a page refused for want of a token redirects to
        the login form instead of answering JSON; every page gets the CSP."""

        @web.middleware
        async def ui_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
            resp = await handler(request)
            page = request.path == "/" or request.path.startswith("/slo/")
            if page and resp.status == 401 and request.method in ("GET", "HEAD"):
                raise web.HTTPSeeOther(forwarded_prefix(request) + "/login")
            if page or request.path == "/login":
                resp.headers["Content-Security-Policy"] = CSP
                resp.headers["X-Content-Type-Options"] = "nosniff"
                resp.headers["Referrer-Policy"] = "no-referrer"
            return resp

        return ui_pages

    # -- pages -----------------------------------------------------------------------

    def _page(self, template: str, status: int = 200, **values: str) -> web.Response:
        body = self._templates[template].substitute(values)
        return web.Response(
            text=body,
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    def _row_html(self, row: SummaryRow, windows: list[str]) -> str:
        name, group, service, objective, b, tte, burn_list, firing = row
        label = name if group is None else f"{name} [{group}]"
        width = 0.0 if b is None else max(0.0, min(1.0, b)) * 100
        burns = dict(zip(windows, burn_list, strict=True))
        policy = self._policies_json[self._policy_of[name]]
        rows = "".join(
            f"<li>{_e(r['severity'])} &times;{_e(r['factor'])}: "
            f"{_e(r['long'])} {_rate(burns.get(str(r['long'])))} &middot; "
            f"{_e(r['short'])} {_rate(burns.get(str(r['short'])))}</li>"
            for r in policy
        )
        alert = f'<span class="firing">{_e(", ".join(firing))}</span>' if firing else "ok"
        low = " low" if b is not None and b < 0.25 else ""
        return (
            f'<tr data-slo="{_e(name)}" data-group="{_e(group or "")}">'
            f'<th scope="row"><a href="{_e(slo_href(name, group))}">{_e(label)}</a></th>'
            f"<td>{_e(service or 'composite')}</td>"
            f'<td class="num">{objective:g}%</td>'
            f'<td class="budget"><span class="bar{low}" aria-hidden="true">'
            f'<span style="width:{width:.1f}%"></span></span>'
            f'<span class="num">{_percent(b)}</span></td>'
            f'<td><ul class="burns">{rows}</ul></td>'
            f'<td class="alert">{alert}</td>'
            f'<td class="num">{_duration(tte)}</td>'
            "</tr>"
        )

    def _listing(self) -> tuple[list[str], list[SummaryRow]]:
        """The list's windows and rows (the evaluate role's: engine.adapters.http.partitioned)."""
        return self.summary.windows, self.summary.rows()

    async def _list(self, request: web.Request) -> web.Response:
        windows, summary = self._listing()
        rows = "\n".join(self._row_html(r, windows) for r in summary)
        policies = msgspec.json.encode(
            {"policies": self._policies_json, "slo_policy": self._policy_of}
        ).decode()
        return self._page(
            "list",
            rows=rows,
            count=str(len(summary)),
            refresh_ms=str(int(self.refresh_s * 1000)),
            policies=policies.replace("</", "<\\/"),
        )

    def _api_of(self, request: web.Request, name: str) -> SloApi:
        """The views of SLO `name` (the evaluate role's: of its partition's evaluator)."""
        return self.api

    async def _slo(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        group = request.query.get("group")
        views = self._api_of(request, name)
        i = views.column_of(name)
        if i is not None and group is None and views.evaluator.slos[i].group_by:
            groups = sorted(views.group_columns(name))
            if groups:
                raise web.HTTPSeeOther(forwarded_prefix(request) + "/" + slo_href(name, groups[0]))
        view = None if i is None else views.view(name, group)
        if view is None:
            raise web.HTTPNotFound(text=f"no SLO {name!r}" + (f" group {group!r}" if group else ""))
        title = name if group is None else f"{name} [{group}]"
        b = view.error_budget
        facts = [
            ("Service", view.service or "composite"),
            ("Objective", f"{view.objective:g}% over {view.period}"),
            ("SLI", view.sli or "composite"),
            ("Budget remaining", _percent(b.remaining_ratio)),
            (f"Burn rate ({b.burn_rate_window})", _rate(b.burn_rate)),
            ("Time to exhaustion", _duration(b.time_to_exhaustion_s)),
            ("Events", f"{view.events_total:,} ({view.bad_events_total:,} bad)"),
        ]
        facts_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
        desc = f"<p>{_e(view.description)}</p>" if view.description else ""
        if view.runbook_url and view.runbook_url.startswith(("https://", "http://")):
            desc += f'<p><a href="{_e(view.runbook_url)}" rel="noreferrer">Runbook</a></p>'
        api = "../v1/slos/" + quote(name, safe="")
        query = "" if group is None else "?group=" + quote(group, safe="")
        return self._page(
            "slo",
            title=_e(title),
            name=_e(name),
            service=_e(view.service or ""),
            api=_e(api),
            query=_e(query),
            facts=facts_html,
            description=desc,
            refresh_ms=str(int(self.refresh_s * 1000)),
        )

    # -- login -----------------------------------------------------------------------

    async def _login_form(self, request: web.Request) -> web.Response:
        if not self.auth.enabled:
            raise web.HTTPSeeOther(forwarded_prefix(request) + "/")
        return self._page("login", error="")

    async def _login(self, request: web.Request) -> web.Response:
        prefix = forwarded_prefix(request)
        if not self.auth.enabled:
            raise web.HTTPSeeOther(prefix + "/")
        if (request.content_length or 0) > MAX_LOGIN_BYTES:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_LOGIN_BYTES, actual_size=request.content_length or 0
            )
        form = await request.post()
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        if not token or self.auth.check(f"Bearer {token}") is not None:
            reason = "invalid login token"
            if self.auth.on_denied is not None:  # the audit log's auth.denied
                self.auth.on_denied(request.remote or "", "POST", "/login", 401, reason, None)
            if self.auth.refusals.admit((request.remote, "POST", "/login", reason), reason):
                log.warning(
                    "401 POST /login from %s: %s",
                    request.remote,
                    reason,
                    extra={
                        "data": {
                            "event": "unauthorized",
                            "remote": request.remote,
                            "method": "POST",
                            "path": "/login",
                            "reason": reason,
                        }
                    },
                )
            return self._page(
                "login",
                status=401,
                error='<p class="error" role="alert">That token is not valid.</p>',
            )
        resp = web.HTTPSeeOther(prefix + "/")
        resp.set_cookie(
            COOKIE_NAME,
            token,
            path=prefix or "/",
            httponly=True,
            samesite="Strict",
            secure=_secure(request),
        )
        raise resp

    # -- assets ----------------------------------------------------------------------

    async def _static(self, request: web.Request) -> web.Response:
        asset = self._assets.get(request.match_info["path"])
        if asset is None:
            raise web.HTTPNotFound()
        body, ctype = asset
        return web.Response(
            body=body,
            content_type=ctype,
            charset="utf-8",
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )
