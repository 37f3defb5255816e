"""HTTP routes of the API gateway: the merchant's upstream registration (under /api/v1)
and the gateway itself, ``/gateway/{product_id}/{path}``.

A gateway call is async. It reads the ledger head (one primary-key query); when this
process holds a decision for the same credential, product and ``X-Contract`` loaded
under that very head (``decisions``), its checks (``gateway.admit``) run on the event
loop without touching the database; otherwise the facts — the caller, the contract's, the
upstream's — are loaded in a worker thread in one short read session and cached. Every
change to those facts moves the head, so a suspension or revocation committed before the
request refuses it; time (terms, expiries) is judged on every call. The call is then
forwarded over this process's pooled ``httpx.AsyncClient`` without holding a thread, and
metered in memory (``Meter``: one ``call`` event per call, bytes merged per contract),
written in batches.

Outcomes, as metered (metric ``call``, and ``byte`` for the response size when billed):

- ``ok`` (billed): a 2xx answer, or a 4xx the upstream gave to the buyer's request (400,
  404, 409, 422 …), relayed as is. A 4xx is a delivered answer: the merchant's service ran
  and said, for instance, that the number is unknown, which is the information the buyer
  pays for; not billing it would let a buyer probe for free.
- ``upstream_error`` (never billed): no answer (connection error → 502
  ``upstream-error``; no answer within the upstream's ``timeout_ms`` → 504
  ``upstream-timeout``), a 5xx (→ 502 naming ``upstream_status``), a redirect (not
  followed, → 502), 401/403/407 (the upstream refused the exchange's own credential: the
  merchant's configuration, → 502), a response over ``gateway_max_response_bytes`` or one
  that cannot be filtered (→ 502); and 408/429, which are relayed as is but are the
  upstream's capacity, not an answer.
- ``refused`` (never billed): a usage-policy refusal once the caller's contract is
  identified (problem+json naming the ``constraint``). A call without credentials or
  without any contract of the caller's on the product is not metered.

Forwarded to the upstream: the method, the path, the query string (less the gateway's
own ``fields``), the body as is, ``Content-Type``, ``Accept`` and the request id, plus the
upstream's credential header. Never the buyer's ``Authorization`` or cookies.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from databourse import __version__
from databourse.api.context import AppContext
from databourse.api.deps import Caller, Cmd, Ctx, ReadSession, action
from databourse.auth.errors import InvalidToken
from databourse.db import utcnow
from databourse.delivery import decisions, keys
from databourse.delivery import gateway as gw
from databourse.delivery.errors import UpstreamFailed, UpstreamTimeout, UsageRefused
from databourse.delivery.meter import Meter
from databourse.delivery.ratelimit import RateLimiter
from databourse.logs import request_id

log = logging.getLogger("databourse.delivery.gateway")
router = APIRouter(tags=["delivery"])
gateway = APIRouter(tags=["gateway"])

NOT_BILLED_4XX = frozenset({408, 429})
CREDENTIAL_REFUSED = frozenset({401, 403, 407})
RELAYED_HEADERS = ("content-type", "retry-after", "cache-control", "content-language")


# Registration -----------------------------------------------------------------------------


@router.put(
    "/products/{product_id}/upstream",
    response_model=gw.UpstreamOut,
    openapi_extra=action("upstream.set"),
)
def set_upstream(product_id: str, body: gw.UpstreamIn, caller: Caller, ctx: Ctx, cmd: Cmd) -> Any:
    """Register or replace where the gateway forwards the ``api`` product's calls. The
    credential (``auth_secret``) is stored sealed and never returned."""
    return cmd.run(
        lambda uow: gw.register_upstream(
            uow,
            caller,
            ctx.custody_secret,
            product_id,
            body,
            default_timeout_ms=ctx.settings.gateway_timeout_ms,
        ),
        _for_idempotency(ctx.custody_secret, body),
    )


def _for_idempotency(root: bytes, body: gw.UpstreamIn) -> gw.UpstreamIn:
    """The body as the idempotency record hashes it: the credential replaced by a keyed
    hash of it, so two requests with different credentials still differ but the stored
    hash offers nothing to guess a weak credential against."""
    if body.auth_secret is None:
        return body
    keyed = hmac.new(keys.derive(root, "idempotency"), body.auth_secret.encode(), "sha256")
    return body.model_copy(update={"auth_secret": keyed.hexdigest()})


@router.get(
    "/products/{product_id}/upstream",
    response_model=gw.UpstreamOut,
    openapi_extra=action("upstream.read"),
)
def get_upstream(product_id: str, caller: Caller, session: ReadSession) -> Any:
    """The upstream registration; of the credential, only whether one is set."""
    return gw.get_upstream(session, caller, product_id)


# Process state ----------------------------------------------------------------------------


@dataclass
class GatewayState:
    """What the gateway keeps per process: rate windows, the decisions (with their
    unsealed credentials), the pool."""

    limiter: RateLimiter
    heads: gw.HeadReader
    decisions: decisions.DecisionCache[gw.Decision]
    client: httpx.AsyncClient | None = None


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": f"DataBourse-Gateway/{__version__}"},
    )


def state_of(app: FastAPI) -> GatewayState:
    state: GatewayState | None = getattr(app.state, "gateway", None)
    if state is None:
        ctx: AppContext = app.state.ctx
        state = GatewayState(RateLimiter(), gw.HeadReader(ctx.db.reader), decisions.DecisionCache())
        app.state.gateway = state
    if state.client is None:  # created in the lifespan; lazily when run without one
        state.client = new_client()
    return state


def open_gateway(app: FastAPI) -> None:
    """At start-up (the app's lifespan): the pooled client of this process."""
    state_of(app)


async def close_gateway(app: FastAPI) -> None:
    state: GatewayState | None = getattr(app.state, "gateway", None)
    if state is not None:
        state.heads.close()
        if state.client is not None:
            await state.client.aclose()
            state.client = None


# The gateway ------------------------------------------------------------------------------


def _credential(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if not auth:
        return None
    scheme, _, credential = auth.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise InvalidToken("use 'Authorization: Bearer <API key or token>'")
    return credential.strip()


def _query(request: Request) -> str:
    """The query string to forward: the buyer's, without the gateway's ``fields``."""
    raw = request.url.query
    if "fields" not in raw:
        return raw
    pairs = parse_qsl(raw, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k != "fields"])


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def _forward(
    client: httpx.AsyncClient,
    target: gw.Target,
    method: str,
    query: str,
    body: bytes,
    request: Request,
    max_bytes: int,
) -> Answer:
    headers: dict[str, str] = {}
    for name in ("content-type", "accept"):
        value = request.headers.get(name)
        if value:
            headers[name] = value
    rid = request_id.get()
    if rid:
        headers["x-request-id"] = rid
    if target.auth_header and target.auth_value is not None:
        headers[target.auth_header] = target.auth_value
    url = f"{target.url}?{query}" if query else target.url
    try:
        async with asyncio.timeout(target.timeout):
            req = client.build_request(
                method, url, headers=headers, content=body or None, timeout=target.timeout
            )
            resp = await client.send(req, stream=True)
            try:
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise UpstreamFailed(
                        f"the upstream's answer ({declared} bytes) is over the gateway's "
                        f"limit of {max_bytes} bytes"
                    )
                chunks, size = [], 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise UpstreamFailed(
                            f"the upstream's answer is over the gateway's limit of {max_bytes} "
                            "bytes"
                        )
                    chunks.append(chunk)
            finally:
                await resp.aclose()
    except (TimeoutError, httpx.TimeoutException):
        raise UpstreamTimeout(
            f"the upstream did not answer within {round(target.timeout * 1000)} ms"
        ) from None
    except httpx.HTTPError as exc:
        log.warning("gateway: upstream unreachable: %s", type(exc).__name__)
        raise UpstreamFailed(f"the upstream could not be reached ({type(exc).__name__})") from None
    relayed = {k: v for k in RELAYED_HEADERS if (v := resp.headers.get(k)) is not None}
    return Answer(resp.status_code, relayed, b"".join(chunks))


def _judge(answer: Answer, target: gw.Target) -> tuple[bytes, bool]:
    """The body to relay and whether the call is billed; ``UpstreamFailed`` when the
    answer is not relayed."""
    status = answer.status
    if status >= 500:
        raise UpstreamFailed(f"the upstream failed with HTTP {status}", upstream_status=status)
    if 300 <= status < 400 or status < 200:
        raise UpstreamFailed(
            f"the upstream answered HTTP {status}; the gateway does not follow redirects",
            upstream_status=status,
        )
    if status in CREDENTIAL_REFUSED:
        raise UpstreamFailed(
            f"the upstream refused the exchange's credential (HTTP {status}); the merchant "
            "must update the upstream registration",
            upstream_status=status,
        )
    try:
        body = gw.filter_fields(answer.body, answer.headers.get("content-type"), target.fields)
    except gw.Unfilterable as exc:
        raise UpstreamFailed(
            f"{exc}; the contract licenses only some fields, so it cannot be relayed",
            upstream_status=status,
        ) from None
    return body, status not in NOT_BILLED_4XX


#: The request's parameters the gateway reads itself (rather than FastAPI's declared
#: parameters, which cost a validation pass per call): (where, name, max length, doc).
PARAMETERS = (
    ("query", "fields", 4000, "Comma-separated fields wanted; all licensed ones by default"),
    ("header", "X-Purpose", 64, "The purpose of this use (required)"),
    ("header", "X-Territory", 16, "Where the data is used; default CN"),
    ("header", "X-Contract", 40, "Which of your contracts to use"),
)


def _param(request: Request, where: str, name: str, limit: int) -> str | None:
    source = request.query_params if where == "query" else request.headers
    value = source.get(name)
    if value is not None and len(value) > limit:
        raise RequestValidationError(
            [
                {
                    "loc": (where, name.lower()),
                    "msg": f"String should have at most {limit} characters",
                    "type": "string_too_long",
                }
            ]
        )
    return value


def _call_in(request: Request, product_id: str, path: str) -> gw.CallIn:
    fields, purpose, territory, contract = (
        _param(request, where, name, limit) for where, name, limit, _ in PARAMETERS
    )
    asked = None
    if fields is not None:
        asked = [f.strip() for f in fields.split(",") if f.strip()]
    return gw.CallIn(
        _credential(request),
        product_id,
        request.method,
        "/" + path,
        purpose,
        territory,
        contract,
        asked,
    )


async def call(request: Request, product_id: str, path: str) -> Response:
    """Call the merchant's API under your contract, with your API key or access token.

    Answers carry ``X-Contract-Id`` and, under a count limit, ``X-Usage-Calls-Left``. A
    refusal is problem+json naming the violated ``constraint``; a failure of the
    merchant's service is 502 ``upstream-error`` or 504 ``upstream-timeout``, never
    billed."""
    app = request.app
    ctx: AppContext = app.state.ctx
    state = state_of(app)
    meter: Meter = ctx.meter("gateway")
    c = _call_in(request, product_id, path)
    if c.credential is None:
        raise InvalidToken("present the API key or token as 'Authorization: Bearer …'")
    now, wall = utcnow(), time.time()
    key = decisions.key_of(c.credential, product_id, c.contract_id)

    def decide(at: decisions.Head, cached: gw.Decision | None) -> gw.Admitted:
        """In a worker thread: load what the cache did not have (stored under the head
        read before the load), then admit."""
        d = cached
        if d is None:
            with ctx.reads() as session:
                d, window = gw.load(session, ctx.tokens, ctx.custody_secret, c, now)
            state.decisions.put(key, at, window, d)
        return gw.admit(d, c, now, meter, state.limiter)

    try:
        current = state.heads.read()  # after the request arrived: every earlier commit
        cached = state.decisions.get(key, current, now, wall)
        if cached is not None and not (
            cached.count_limit is not None and meter.refresh_due(cached.grant.contract_id, "call")
        ):
            admitted = gw.admit(cached, c, now, meter, state.limiter)  # no I/O: no thread
        else:
            admitted = await _admit_in_thread(meter, decide, current, cached)
    except UsageRefused as exc:
        contract_id = exc.extra.get("contract_id")
        if contract_id:
            meter.record(contract_id, "call", 1, "refused")
        raise
    reservation, target = admitted.reservation, admitted.target
    contract_id = admitted.grant.contract_id
    try:
        body = await request.body() if request.method != "GET" else b""
        assert state.client is not None
        answer = await _forward(
            state.client,
            target,
            request.method,
            _query(request),
            body,
            request,
            ctx.settings.gateway_max_response_bytes,
        )
        content, billed = _judge(answer, target)
    except BaseException:
        meter.settle(reservation, "upstream_error")
        raise
    if billed:
        meter.settle(reservation, "ok")
        meter.add_bytes(contract_id, len(content))
    else:
        meter.settle(reservation, "upstream_error")
    headers = {k: v for k, v in answer.headers.items() if k != "content-type"}
    headers["X-Contract-Id"] = contract_id
    if admitted.calls_left is not None:
        headers["X-Usage-Calls-Left"] = str(admitted.calls_left)
    return Response(
        content,
        status_code=answer.status,
        headers=headers,
        media_type=answer.headers.get("content-type"),
    )


async def _admit_in_thread(
    meter: Meter,
    decide: Any,
    at: decisions.Head,
    cached: gw.Decision | None,
) -> gw.Admitted:
    """``decide`` in a worker thread. A thread cannot be cancelled: if the caller goes
    away meanwhile, the reservation the thread still makes is released when it is done,
    so the process's count never stays held for a call that was not made."""
    task = asyncio.ensure_future(run_in_threadpool(decide, at, cached))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:

        def release(done: asyncio.Future[gw.Admitted]) -> None:
            if not done.cancelled() and done.exception() is None:
                meter.release(done.result().reservation)

        task.add_done_callback(release)
        raise


for _method in gw.METHODS:
    gateway.add_api_route(
        "/gateway/{product_id}/{path:path}",
        call,
        methods=[_method],
        name=f"gateway_{_method.lower()}",
        openapi_extra={
            **action("gateway.call"),
            "parameters": [
                {
                    "name": name,
                    "in": where,
                    "required": False,
                    "description": doc,
                    "schema": {"type": "string", "maxLength": limit},
                }
                for where, name, limit, doc in PARAMETERS
            ],
        },
        response_class=Response,
    )
