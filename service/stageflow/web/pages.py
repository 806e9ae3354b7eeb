"""The dashboard's pages: server-rendered views over the same services as the API.

Each page view carries the API's mark, ``@requires(role, touches=..., principal=session_token)``,
so ``access.authorize_request`` decides it from the signed-in token with the one rule the API
obeys; templates show a button only when ``can(role, app, stage)`` says that rule would let it
through. Views call the services (``state``, ``promotions``, ``flags``, ``reports``, ``audit``,
``overview``) and never commit themselves.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup
from werkzeug.wrappers import Response as BaseResponse

from stageflow.api import access, errors
from stageflow.api.auth import current_actor, current_stageflow, current_token
from stageflow.domain.errors import StageflowError, Unauthenticated
from stageflow.domain.hooks import Restore
from stageflow.domain.promotions import STATUSES, WAITING, Promotion
from stageflow.services import (
    audit,
    events,
    flags,
    overview,
    promotions,
    reports,
    rollbacks,
    state,
    tokens,
)
from stageflow.web import charts, live, session

blp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

# A promotion page polls each second while its promotion is in one of these and its event
# stream is out of reach (every live.POLL_SECONDS otherwise, like the other live pages); with
# the stream, every page that changes by itself follows it (web/live.py).
LIVE = (*WAITING, "applying")
CHART_HOURS = (1, 6, 24)
FRAGMENT_HEADER = "X-Fragment"  # the page's script asks for the part it replaces, not the page


def page(role: str, *, touches: access.Resolver | None = None) -> Callable[[Any], Any]:
    """Mark a page view as the API marks its views, with the token from the signed-in session."""
    return access.requires(role, touches=touches, principal=session.session_token)


def can(role: str, app: str | None = None, stage: str | None = None) -> bool:
    """Whether the signed-in token passes ``@requires(role)`` for ``app`` and ``stage``."""
    token = g.get("token")
    return token is not None and token.has_role(role) and token.scope.covers(app, stage)


@blp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {
        "can": can,
        "csrf_token": session.csrf_token,
        "csrf_field": lambda: Markup(
            f'<input type="hidden" name="{session.CSRF_FIELD}" value="{session.csrf_token()}">'
        ),
        "short": lambda sha: (sha or "")[:7],
        "signed_in": lambda: g.get("token") if request.blueprint == "web" else None,
        "app_names": _app_names,
        "poll_seconds": live.POLL_SECONDS,
        "waiting_poll_seconds": live.WAITING_POLL_SECONDS,
    }


def _app_names() -> list[str]:
    token = g.get("token")
    if token is None:
        return []
    return [a["name"] for a in state.apps_view(current_stageflow(), token.scope)]


@blp.after_app_request
def _after(response: Response) -> Response:
    if request.blueprint == "web":
        session.remember_login_csrf(response)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", _policy())
    return response


def _policy() -> str:
    """The pages' Content-Security-Policy: their own origin, and the event stream's."""
    stream = live.stream_origin()
    connect = f"; connect-src 'self' {stream}" if stream else ""
    return (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"
        + connect
    )


def _live_page(template: str, part: str, follow: str | None, **context: Any) -> Any:
    """A page that follows the event stream: the whole page, or (``X-Fragment``) the part its
    script swaps in on an event, tagged by its content so that an unchanged part is a 304 and
    the page keeps what the reader opened or scrolled to.

    The whole page embeds the part rendered once and carries its tag (``data-etag``), so even
    the script's first ask (an event, or a poll without the stream) is a 304 when nothing moved.
    """
    body = render_template(part, **context)
    tag = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()[:16] + "-f"
    if not request.headers.get(FRAGMENT_HEADER):
        refresh = request.full_path.rstrip("?")
        return render_template(
            template, events=follow, refresh=refresh, part=Markup(body), etag=f'"{tag}"', **context
        )
    if request.if_none_match.contains(tag):
        return Response(status=304, headers={"ETag": f'"{tag}"'})
    response = make_response(body)
    response.set_etag(tag)
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.errorhandler(StageflowError)
def _refused(error: StageflowError) -> Any:
    """Domain errors as pages (or fragments); a page without a session goes to sign-in."""
    if isinstance(error, Unauthenticated) and request.method == "GET":
        return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
    status = errors.status_of(error)
    if request.headers.get(FRAGMENT_HEADER):
        return Response(error.message, status=status, mimetype="text/plain")
    body = render_template("error.html", error=error, status=status)
    return Response(body, status=status, mimetype="text/html")


# -- signing in ---------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never another host) is a place to go after signing in."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("web.pipeline")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return url_for("web.pipeline")
    return target


@blp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Sign in with an API token (the form is open; the token decides everything after it)."""
    error = None
    status = 200
    if request.method == "POST":
        session.require_login_csrf()
        secret = (request.form.get("token") or "").strip()
        try:
            token = tokens.authenticate(current_stageflow(), secret, client=request.remote_addr)
            if not token.has_role("viewer"):
                raise Unauthenticated(
                    f"token {token.name!r} only evaluates flags (role client); sign in with a "
                    "token that may read the pipeline",
                    code="token_cannot_read",
                )
        except Unauthenticated as refused:
            error, status = refused.message, 401
        else:
            response = redirect(_safe_next(request.form.get("next")))
            session.start_session(response, secret)
            return response
    body = render_template("login.html", error=error, next=request.values.get("next", ""))
    return Response(body, status=status, mimetype="text/html")


@blp.route("/logout", methods=["POST"])
def logout() -> Any:
    """Sign out: the session cookie is dropped (the CSRF token proves the page asked for it)."""
    session.require_csrf(session.csrf_for(request.cookies.get(session.SESSION_COOKIE, "")))
    response = redirect(url_for("web.login"))
    session.end_session(response)
    return response


# -- pipeline ----------------------------------------------------------------------------------


@blp.get("/")
@page("viewer")
def pipeline() -> Any:
    """Every app in every stage at a glance, and what a promotion would move between them."""
    sf = current_stageflow()
    token = current_token()
    follow = live.events_url()  # before reading: what changes meanwhile is replayed
    apps = overview.pipeline_overview(sf, token.scope, requester=token.owner)
    return _live_page(
        "pipeline.html", "_pipeline.html", follow, apps=apps, pipeline=state.pipeline_view(sf)
    )


@blp.post("/apps/<app>/stages/<stage>/promote")
@page("promoter")
def promote(app: str, stage: str) -> Any:
    """Open a promotion of ``app`` into ``stage`` (the URL names the target, so access sees it)."""
    promotion = promotions.promote(
        current_stageflow(),
        app,
        to=stage,
        reason=(request.form.get("reason") or "").strip() or None,
        actor=current_actor(),
    )
    return redirect(url_for("web.promotion", promotion_id=promotion.id), code=303)


# -- one stage ---------------------------------------------------------------------------------


@blp.get("/apps/<app>/stages/<stage>")
@page("viewer")
def stage_page(app: str, stage: str) -> Any:
    """A stage's own dashboard: metric charts, checks, deployments, promotions into it."""
    sf = current_stageflow()
    follow = live.events_url(app, stage)
    hours = request.args.get("hours", 6, type=float)
    hours = hours if hours in CHART_HOURS else 6
    now = time.time()
    column = overview.stage_column(sf, app, stage)
    drawn = [
        {
            "gate": chart.gate,
            "svg": charts.line_chart(
                chart.series,
                title=f"{chart.gate.name} in {stage}",
                start=now - hours * 3600,
                end=now,
                low=chart.gate.min,
                high=chart.gate.max,
            ),
            "series": chart.series,
        }
        for chart in overview.stage_charts(sf, app, stage, hours=hours, now=now)
    ]
    return _live_page(
        "stage.html",
        "_stage.html",
        follow,
        app=app,
        stage=column.stage,
        col=column,
        charts=drawn,
        hours=hours,
        chart_hours=CHART_HOURS,
        checks=reports.list_checks(sf, app, stage, limit=30),
        deployments=reports.recent_deployments(sf, app, stage, limit=30),
        promotions=promotions.list_promotions(sf, app=app, target=stage, limit=20),
    )


# -- flags -------------------------------------------------------------------------------------


def _matrix_context(app: str) -> dict[str, Any]:
    sf = current_stageflow()
    token = current_token()
    revision, matrix = state.flag_matrix(sf, app)
    stages = [s for s in state.snapshot(sf).pipeline.stages if token.scope.covers(stage=s.name)]
    if token.scope.stages:
        matrix = state.matrix_within_stages(matrix, token.scope.stages)
    return {"app": app, "revision": revision, "matrix": matrix, "stages": stages}


@blp.get("/apps/<app>/flags")
@page("viewer")
def flag_matrix(app: str) -> Any:
    """Flags as rows, stages as columns: each cell a switch (for those who may edit)."""
    return render_template("flags.html", **_matrix_context(app))


@blp.post("/apps/<app>/stages/<stage>/flags/<key>")
@page("editor")
def toggle_flag(app: str, stage: str, key: str) -> Any:
    """Switch one flag in one stage: one commit, at once."""
    enabled = request.form.get("enabled") == "true"
    done = flags.update_stage_flag(
        current_stageflow(), app, stage, key, flags.StageFlagChange(enabled), actor=current_actor()
    )
    if request.headers.get(FRAGMENT_HEADER):
        context = _matrix_context(app)
        row = context["matrix"].get(key)
        stage_def = next(s for s in context["stages"] if s.name == stage)
        return render_template(
            "_flag_cell.html",
            app=app,
            key=key,
            row=row,
            stage=stage_def,
            committed=done.revision,
        )
    return redirect(url_for("web.flag_matrix", app=app, committed=done.revision), code=303)


# -- promotions --------------------------------------------------------------------------------


@blp.get("/promotions")
@page("viewer")
def promotion_list() -> Any:
    """Promotions, newest first, filtered by status, app and target stage."""
    status = request.args.get("status") or None
    app = request.args.get("app") or None
    target = request.args.get("to") or None
    items = promotions.list_promotions(
        current_stageflow(),
        app=app,
        target=target,
        status=status if status in STATUSES else None,
        limit=100,
        scope=current_token().scope,
    )
    return render_template(
        "promotions.html",
        items=items,
        statuses=STATUSES,
        stages=state.snapshot(current_stageflow()).pipeline.stage_names,
        chosen={"status": status, "app": app, "to": target},
    )


def _promotion_tag(promotion: Promotion, restore: Restore | None = None) -> str:
    marks = f"{promotion.id}:{promotion.status}:{promotion.updated_at}:{len(promotion.approvals)}"
    if restore is not None:
        marks += f":{restore.controller_told_at}:{restore.healthy_at}"
    return hashlib.sha1(marks.encode(), usedforsecurity=False).hexdigest()[:16]


@blp.get("/promotions/<int:promotion_id>")
@page("viewer", touches=access.promotion)
def promotion(promotion_id: int) -> Any:
    """A promotion: status, plan, diff, gates with evidence, approvals, commit and actions.

    Its page's script asks again with ``If-None-Match`` whenever the event stream tells of an
    event of its app (polling instead while the stream is out of reach: each second while it
    waits, every ``live.POLL_SECONDS`` like the other live pages once it settled) and swaps in
    the new part when the tag changed (304 otherwise).
    """
    fragment = bool(request.headers.get(FRAGMENT_HEADER))
    after = (
        None if fragment or live.stream_origin() is None else events.last_id(current_stageflow())
    )
    found = promotions.get_promotion(current_stageflow(), promotion_id)
    restore = (  # a rollback's time to restore moves on without the promotion changing
        rollbacks.restore_of(current_stageflow(), promotion_id)
        if found.status == "rolled_back"
        else None
    )
    tag = _promotion_tag(found, restore)
    part_tag = f'"{tag}-f"'  # the part's, for the page's first ask (see _live_page)
    tag += "-f" if fragment else ""
    if request.if_none_match.contains(tag):
        return Response(status=304, headers={"ETag": f'"{tag}"'})
    template = "_promotion.html" if fragment else "promotion.html"
    response = make_response(
        render_template(
            template,
            p=found,
            live=found.status in LIVE,
            diff=_diff_lines(found.diff),
            restore=restore,
            events=None if after is None else live.events_url(found.app, after=after),
            etag=part_tag,
        )
    )
    response.set_etag(tag)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _diff_lines(diff: str) -> list[tuple[str, str]]:
    kinds = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kinds.append(("file", line))
        elif line.startswith("@@"):
            kinds.append(("hunk", line))
        elif line.startswith("+"):
            kinds.append(("add", line))
        elif line.startswith("-"):
            kinds.append(("del", line))
        else:
            kinds.append(("ctx", line))
    return kinds


def _back_to(promotion_id: int) -> BaseResponse:
    return redirect(url_for("web.promotion", promotion_id=promotion_id), code=303)


@blp.post("/promotions/<int:promotion_id>/approve")
@page("approver", touches=access.promotion)
def approve(promotion_id: int) -> Any:
    """Approve a waiting promotion (never your own)."""
    comment = (request.form.get("comment") or "").strip() or None
    promotions.approve(current_stageflow(), promotion_id, actor=current_actor(), comment=comment)
    return _back_to(promotion_id)


@blp.post("/promotions/<int:promotion_id>/evaluate")
@page("promoter", touches=access.promotion)
def evaluate(promotion_id: int) -> Any:
    """Re-run the gates; applies when they hold."""
    promotions.evaluate(current_stageflow(), promotion_id, actor=current_actor())
    return _back_to(promotion_id)


@blp.post("/promotions/<int:promotion_id>/cancel")
@page("promoter", touches=access.promotion)
def cancel(promotion_id: int) -> Any:
    """Cancel a waiting promotion."""
    promotions.cancel(current_stageflow(), promotion_id, actor=current_actor())
    return _back_to(promotion_id)


@blp.post("/promotions/<int:promotion_id>/rollback")
@page("promoter", touches=access.promotion)
def rollback(promotion_id: int) -> Any:
    """Restore the target overlay as it was before this promotion, in a new commit."""
    reason = (request.form.get("reason") or "").strip() or None
    rollbacks.rollback(current_stageflow(), promotion_id, actor=current_actor(), reason=reason)
    return _back_to(promotion_id)


# -- history -----------------------------------------------------------------------------------


@blp.get("/audit")
@page("viewer")
def history() -> Any:
    """The audit log, newest first, filtered by app, stage and actor."""
    chosen = {k: (request.args.get(k) or "").strip() or None for k in ("app", "stage", "actor")}
    entries = audit.list_audit(
        current_stageflow(),
        audit.AuditPageRequest(
            app=chosen["app"], stage=chosen["stage"], actor=chosen["actor"], limit=200
        ),
        reader=current_token(),
    )
    return render_template(
        "audit.html",
        entries=entries,
        chosen=chosen,
        stages=state.snapshot(current_stageflow()).pipeline.stage_names,
    )
