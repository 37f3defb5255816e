"""The metered API gateway of ``api`` products: the merchant's upstream registration, and
the checks every call passes before it is forwarded.

Registration (``register_upstream``) is a command: the merchant of an ``api`` product
names where calls go (base URL), which paths and methods are open, which response fields
may come back, how long the upstream has to answer, and the credential the exchange
presents to it. The credential is sealed (AES-256-GCM, bound to the product id) and never
shown again, logged or put on the ledger: the ``upstream.registered`` entry commits to a
SHA-256 of the sealed value only.

A call is decided on facts read from the database (``load``: the caller, its contract's
grant and standing, the upstream with its credential unsealed) and judged against them
at the call's time (``judge``, then ``admit``), in this order — the first failure is the
answer:

1. the caller: an API key or access token of an admitted buyer (``gateway.call``);
2. the contract: the buyer's active contract on the product (or the one ``X-Contract``
   names), usable now — not suspended, nor its product, nor either organisation; inside
   its term — for the declared purpose (``X-Purpose``) and territory (``X-Territory``);
3. the product is an ``api`` product with an upstream;
4. ``path``: the path and method are open; ``fields``: the fields asked for are licensed;
5. ``rate``: the contract's rate limits (this process's ``RateLimiter``);
6. ``count``: the call count, under the tightest of ``count.max_calls`` and a package's
   units (``Meter.reserve``: the reservation is settled with the call's outcome).

The loaded facts are reused for the next calls with the same credential, product and
``X-Contract`` while the ledger head — read on every call — is the one they were loaded
under, and their credential and choice of contract hold by time (``decisions``): every
change to them is committed with a ledger entry that moves the head, so a suspension or
revocation committed before a call refuses it, in every process. Time is judged on every
call.

A refusal from step 2 on names the contract, so the route meters it as ``refused``.

Response fields: the buyer receives the fields both the policy (``fields``) and the
upstream registration (``response_fields``) allow — either being None allows all — and,
when the call asks for ``fields``, only those. Only top-level keys of a JSON object, or of
each object of a JSON list, are fields; a response that is not such JSON cannot be
filtered, so it passes only when no restriction applies.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import jwt
from pydantic import Field
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from databourse.auth.errors import InvalidToken
from databourse.auth.models import ApiKey
from databourse.auth.policy import Principal, authorize
from databourse.auth.services import TokenConfig, principal_from_bearer
from databourse.catalog.models import Product
from databourse.db import utcnow
from databourse.delivery import access, decisions, keys, rules
from databourse.delivery.errors import (
    InvalidUpstream,
    NotDeliverable,
    RateLimited,
    UpstreamNotConfigured,
)
from databourse.delivery.meter import Meter, Reservation
from databourse.delivery.models import Upstream
from databourse.delivery.ratelimit import RateLimiter, retry_after
from databourse.errors import NotFound, OrganisationInactive
from databourse.ledger.models import LedgerHead
from databourse.ledger.writer import HEAD_ID, assert_untampered
from databourse.schemas import Out, Strict
from databourse.uow import UnitOfWork

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 100, 120_000
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
DEFAULT_AUTH_HEADER = "Authorization"
# Headers the exchange sets or the transport owns: never the upstream's credential header.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "accept",
        "connection",
        "transfer-encoding",
        "te",
        "upgrade",
        "x-request-id",
        "cookie",
    }
)
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")  # an HTTP header name
_PATH_CHARS = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@/-]*$")  # no %, ?, #, \, spaces

HeaderName = Annotated[str, Field(min_length=1, max_length=100)]
PathPattern = Annotated[str, Field(min_length=1, max_length=200)]
FieldName = Annotated[str, Field(min_length=1, max_length=200)]


# Registration -----------------------------------------------------------------------------


class UpstreamIn(Strict):
    """An ``api`` product's upstream. ``auth_secret`` is write-only: leave it out to keep
    the stored one (and ``auth_header`` to keep its header), send null to remove it. The
    credential goes in ``auth_header`` (default ``Authorization``) exactly as given, e.g.
    ``Bearer …``."""

    base_url: Annotated[str, Field(min_length=8, max_length=500)]
    auth_header: HeaderName | None = None
    auth_secret: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    allowed_paths: Annotated[list[PathPattern], Field(min_length=1, max_length=100)]
    methods: Annotated[list[Method], Field(min_length=1, max_length=5)] = Field(
        default_factory=lambda: ["GET", "POST"]  # type: ignore[arg-type]
    )
    response_fields: Annotated[list[FieldName], Field(max_length=2000)] | None = None
    timeout_ms: Annotated[int, Field(ge=MIN_TIMEOUT_MS, le=MAX_TIMEOUT_MS)] | None = None


class UpstreamOut(Out):
    product_id: str
    base_url: str
    auth_header: str | None
    auth_secret_set: bool
    allowed_paths: list[str]
    methods: list[str]
    response_fields: list[str] | None
    timeout_ms: int
    revision: int
    updated_by: str
    updated_at: datetime


def upstream_out(u: Upstream) -> UpstreamOut:
    return UpstreamOut(
        product_id=u.product_id,
        base_url=u.base_url,
        auth_header=u.auth_header,
        auth_secret_set=u.auth_secret_sealed is not None,
        allowed_paths=list(u.allowed_paths),
        methods=list(u.methods),
        response_fields=None if u.response_fields is None else list(u.response_fields),
        timeout_ms=u.timeout_ms,
        revision=u.revision,
        updated_by=u.updated_by,
        updated_at=u.updated_at,
    )


def subject_of(product_id: str) -> str:
    """The ledger subject of a product's upstream (the product's own entries are apart)."""
    return f"upstream:{product_id}"


def upstream_state(u: Upstream) -> dict[str, Any]:
    """What the ledger commits to: every column the gateway reads; of the credential only
    a hash of its sealed form, which reveals nothing of it."""
    sealed = u.auth_secret_sealed
    return {
        "product_id": u.product_id,
        "base_url": u.base_url,
        "auth_header": u.auth_header,
        "auth_secret_sha256": hashlib.sha256(sealed.encode()).hexdigest() if sealed else None,
        "allowed_paths": list(u.allowed_paths),
        "methods": list(u.methods),
        "response_fields": None if u.response_fields is None else list(u.response_fields),
        "timeout_ms": u.timeout_ms,
        "revision": u.revision,
        "updated_by": u.updated_by,
    }


def _invalid(detail: str, field: str) -> InvalidUpstream:
    return InvalidUpstream(detail, field=field)


def _base_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise _invalid(f"base_url is not a URL: {exc}", "base_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("base_url must be an http or https URL with a host", "base_url")
    if parts.username is not None or parts.password is not None:
        raise _invalid(
            "base_url must not carry credentials; use auth_header and auth_secret", "base_url"
        )
    if parts.query or parts.fragment:
        raise _invalid("base_url must not have a query or a fragment", "base_url")
    if parts.path and not _PATH_CHARS.match(parts.path):
        raise _invalid("base_url's path has characters the gateway does not forward", "base_url")
    return url.rstrip("/")


def _path_pattern(p: str) -> str:
    prefix = p[:-1] if p.endswith("/*") else p
    segments = prefix.split("/")
    if (
        not p.startswith("/")
        or not _PATH_CHARS.match(prefix)
        or "*" in prefix
        or any(s in (".", "..") for s in segments)
        or any(s == "" for s in segments[1:-1])
        or (prefix != "/" and not p.endswith("/*") and segments[-1] == "")
    ):
        raise _invalid(
            f"allowed path {p!r} must be like /score or /v1/* (one trailing * at most)",
            "allowed_paths",
        )
    return p


def _header(name: str | None, secret_given: bool) -> str | None:
    if name is None:
        return DEFAULT_AUTH_HEADER if secret_given else None
    if not _TOKEN.match(name) or name.lower() in RESERVED_HEADERS:
        raise _invalid(f"{name!r} cannot carry the upstream's credential", "auth_header")
    return name


def _declared_fields(product: Product) -> list[str]:
    fields = (product.description or {}).get("fields") or []
    return [str(f["name"]) for f in fields if isinstance(f, dict) and f.get("name")]


def register_upstream(
    uow: UnitOfWork,
    principal: Principal,
    secret_root: bytes,
    product_id: str,
    data: UpstreamIn,
    *,
    default_timeout_ms: int = 10_000,
) -> UpstreamOut:
    """Register or replace the upstream of the merchant's ``api`` product (revision +1)."""
    product = uow.session.get(Product, product_id, with_for_update=True)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    authorize(principal, "upstream.set", product.org_id)
    if product.kind != "api":
        raise NotDeliverable(
            f"product {product_id} is a {product.kind}; only api products have an upstream"
        )
    base_url = _base_url(data.base_url)
    paths = sorted(dict.fromkeys(_path_pattern(p) for p in data.allowed_paths))
    methods: list[str] = [m for m in METHODS if m in set(data.methods)]
    fields = None
    if data.response_fields is not None:
        declared = _declared_fields(product)
        unknown = sorted(set(data.response_fields) - set(declared))
        if unknown:
            raise _invalid(
                f"response fields not declared by the product: {', '.join(unknown)}",
                "response_fields",
            )
        fields = [f for f in declared if f in set(data.response_fields)]

    u = uow.session.get(Upstream, product_id, with_for_update=True, populate_existing=True)
    subject = subject_of(product_id)
    if u is not None:
        assert_untampered(uow, subject, upstream_state(u))
    sealed = u.auth_secret_sealed if u is not None else None
    if "auth_secret" in data.model_fields_set:
        secret = data.auth_secret
        sealed = None if secret is None else keys.seal_text(secret_root, product_id, secret)
    name = data.auth_header
    if u is not None and "auth_header" not in data.model_fields_set:
        name = u.auth_header
    header = _header(name, sealed is not None)
    now = utcnow()
    if u is None:
        u = Upstream(product_id=product_id, revision=0, created_at=now)
        uow.session.add(u)
    u.base_url = base_url
    u.auth_header = header
    u.auth_secret_sealed = sealed
    u.allowed_paths = paths
    u.methods = methods
    u.response_fields = fields
    u.timeout_ms = data.timeout_ms or default_timeout_ms
    u.revision = (u.revision or 0) + 1
    u.updated_by = principal.ref
    u.updated_at = now
    uow.session.flush()
    state = upstream_state(u)
    body = {k: v for k, v in state.items() if k not in ("auth_secret_sha256", "updated_by")}
    body["auth_secret_set"] = sealed is not None
    uow.record("upstream.registered", subject, body, state, (product.org_id,))
    return upstream_out(u)


def get_upstream(session: Session, principal: Principal, product_id: str) -> UpstreamOut:
    """The registration, without the credential (only whether one is set)."""
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"product {product_id} not found")
    authorize(principal, "upstream.read", product.org_id)
    u = session.get(Upstream, product_id)
    if u is None:
        raise NotFound(f"product {product_id} has no upstream registered")
    return upstream_out(u)


# A call -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallIn:
    """What the buyer's request asks for."""

    credential: str | None  # the bearer credential, or None
    product_id: str
    method: str
    path: str  # "/score", as the route decoded it
    purpose: str | None
    territory: str | None
    contract_id: str | None
    fields: list[str] | None  # the ``fields`` query parameter, split


@dataclass(frozen=True)
class Route:
    """An upstream registration as calls use it, its credential unsealed (kept out of
    ``repr``, so it is never logged)."""

    base_url: str
    auth_header: str | None
    auth_value: str | None = field(repr=False)
    allowed_paths: tuple[str, ...]
    methods: tuple[str, ...]
    response_fields: list[str] | None
    timeout: float  # seconds


@dataclass(frozen=True)
class Decision:
    """The facts a call is decided on, loaded together under one ledger head: the caller,
    whether its organisation may call (held, for the contract's standing names it), the
    contract's grant and standing, and the product's upstream (None: none registered)."""

    principal: Principal
    inactive: OrganisationInactive | None
    grant: access.Grant
    facts: rules.UseFacts  # ``now`` is the load's: judged again with each call's time
    route: Route | None
    offered: frozenset[str] | None  # the fields the policy and the upstream allow
    count_limit: int | None


@dataclass(frozen=True)
class Target:
    """Where and how to forward an admitted call."""

    url: str
    auth_header: str | None
    auth_value: str | None = field(repr=False)
    timeout: float  # seconds
    fields: frozenset[str] | None  # the fields the buyer may receive (None: all)


@dataclass
class Admitted:
    grant: access.Grant
    target: Target
    reservation: Reservation
    calls_left: int | None  # under the count limit, after this call (None: no limit)


def path_allowed(patterns: Sequence[str], path: str) -> bool:
    for p in patterns:
        if p.endswith("/*"):
            if path.startswith(p[:-1]) and len(path) > len(p) - 1:
                return True
        elif path == p:
            return True
    return False


def _clean_path(path: str) -> str | None:
    """The path if it is safe to forward as is; None otherwise."""
    if not path.startswith("/") or not _PATH_CHARS.match(path) or len(path) > 2000:
        return None
    if any(s in ("", ".", "..") for s in path.split("/")[1:-1]) or path.endswith(("/.", "/..")):
        return None
    return path


def allowed_fields(
    policy_fields: list[str] | None, upstream_fields: list[str] | None, asked: list[str] | None
) -> frozenset[str] | None:
    """The fields a response may carry (None: every field)."""
    out: set[str] | None = None
    for limit in (policy_fields, upstream_fields, asked):
        if limit is not None:
            out = set(limit) if out is None else out & set(limit)
    return None if out is None else frozenset(out)


def count_limit(grant: access.Grant) -> int | None:
    """The tightest call-count limit: the policy's ``max_calls`` and a package's units."""
    limits = [grant.policy.count.max_calls]
    if grant.unit in (None, "call"):
        limits.append(grant.package_units)
    bounds = [n for n in limits if n is not None]
    return min(bounds) if bounds else None


def principal_of(session: Session, tokens: TokenConfig, credential: str | None) -> Principal:
    if not credential:
        raise InvalidToken("present the API key or token as 'Authorization: Bearer …'")
    return principal_from_bearer(session, tokens, credential)


class HeadReader:
    """Reads the ledger head (``decisions.Head``) in one primary-key query, on a
    connection of its own per thread kept in autocommit, so that every read sees every
    commit before it and costs one statement (a pooled session would add a ping, a
    ``BEGIN`` and a rollback: more than the read itself). Cheap enough to run on the
    event loop: on SQLite a local read; on PostgreSQL one round trip, with a statement
    timeout so that a lock on the table cannot stall the loop for long.

    The connections are taken from the engine's pool and never given back (they are
    closed instead), since their transaction mode was changed."""

    SQL = f"SELECT size, root FROM {LedgerHead.__tablename__} WHERE id = {HEAD_ID}"
    TIMEOUT_MS = 2000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[Any] = []

    def _connect(self) -> Any:
        fairy = self.engine.raw_connection()
        raw: Any = fairy.driver_connection
        if self.engine.dialect.name == "postgresql":
            raw.autocommit = True
            raw.execute(f"SET statement_timeout = {self.TIMEOUT_MS}")
        else:  # pysqlite: no implicit BEGIN, so each SELECT reads the latest commit
            raw.isolation_level = None
        self._local.conn = fairy
        with self._lock:
            self._open.append(fairy)
        return fairy

    def _drop(self, fairy: Any) -> None:
        self._local.conn = None
        with self._lock:
            if fairy in self._open:
                self._open.remove(fairy)
        fairy.invalidate()  # closed, never back in the pool with autocommit on

    def read(self) -> decisions.Head:
        for attempt in (1, 2):  # a connection the server dropped is replaced once
            fairy = getattr(self._local, "conn", None) or self._connect()
            try:
                cur = fairy.driver_connection.cursor()
                try:
                    cur.execute(self.SQL)
                    size, root = cur.fetchone()
                finally:
                    cur.close()
                return decisions.Head(size, bytes(root))
            except Exception:
                self._drop(fairy)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lock:
            fairies, self._open = self._open, []
        for fairy in fairies:
            fairy.invalidate()


def _route(u: Upstream, secret_root: bytes) -> Route:
    auth_value = None
    if u.auth_secret_sealed is not None:
        auth_value = keys.unseal_text(secret_root, u.product_id, u.auth_secret_sealed)
    return Route(
        base_url=u.base_url,
        auth_header=u.auth_header if auth_value is not None else None,
        auth_value=auth_value,
        allowed_paths=tuple(u.allowed_paths),
        methods=tuple(u.methods),
        response_fields=None if u.response_fields is None else list(u.response_fields),
        timeout=u.timeout_ms / 1000,
    )


def _token_expiry(credential: str) -> float | None:
    """An access token's ``exp`` (Unix seconds); read once it has been verified."""
    try:
        exp = jwt.decode(credential, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:  # pragma: no cover - it was just verified
        return None
    return float(exp) if isinstance(exp, int) else None


def load(
    session: Session, tokens: TokenConfig, secret_root: bytes, call: CallIn, now: datetime
) -> tuple[Decision, decisions.Window]:
    """Read what the call is decided on, and until when that holds by time alone; the
    caller's refusal when there is no contract to decide on (the caller unknown, not a
    buyer, or without a contract on the product)."""
    principal = principal_of(session, tokens, call.credential)
    inactive: OrganisationInactive | None = None
    try:
        authorize(principal, "gateway.call", principal.org_id)
    except OrganisationInactive as exc:  # named by the contract's standing
        inactive = exc
    try:
        contract_id = access.contract_for(
            session, principal.org_id, call.product_id, call.contract_id, now
        )
    except access.NoUsableContract:
        if inactive is not None:
            raise inactive from None
        raise
    grant, facts = access.grant_and_facts(session, contract_id, now)
    route = None
    if grant.product_kind == "api":
        u = session.get(Upstream, grant.product_id)
        if u is not None:
            route = _route(u, secret_root)
    ends: list[datetime | None] = []
    if call.contract_id is None:  # the contract chosen by time: until the choice may change
        ends.append(access.choice_changes_at(session, principal.org_id, call.product_id, now))
    wall_until = None
    if principal.kind == "apikey":
        ends.append(session.scalar(select(ApiKey.expires_at).where(ApiKey.id == principal.id)))
    else:  # an access token: its exp, on the wall clock as jwt.decode reads it
        wall_until = _token_expiry(call.credential or "")
    decision = Decision(
        principal,
        inactive,
        grant,
        facts,
        route,
        None if route is None else allowed_fields(grant.policy.fields, route.response_fields, None),
        count_limit(grant),
    )
    until = min((t for t in ends if t is not None), default=None)
    return decision, decisions.Window(now, until, wall_until)


def judge(d: Decision, call: CallIn, now: datetime) -> tuple[Route, str, frozenset[str] | None]:
    """The usage policy's answer on a decision's facts at ``now``, in the order of the
    module's docstring: the route, the path to forward and the fields the buyer may
    receive; or the first refusal raised. Pure."""
    grant = d.grant
    refusal = rules.standing(replace(d.facts, now=now))
    if refusal is None:
        refusal = rules.declared(
            grant.policy, call.purpose, call.territory or access.DEFAULT_TERRITORY
        )
    if refusal is not None:
        raise access.refuse(refusal, grant)
    if d.inactive is not None:  # pragma: no cover - the standing check names it first
        raise d.inactive
    if grant.product_kind != "api":
        raise NotDeliverable(f"product {grant.product_id} is a {grant.product_kind}, not an API")
    route = d.route
    if route is None:
        raise UpstreamNotConfigured(f"product {grant.product_id} has no upstream registered yet")

    path = _clean_path(call.path)
    if path is None or not path_allowed(route.allowed_paths, path):
        shown = call.path if len(call.path) <= 200 else call.path[:200] + "…"
        raise access.refuse(rules.Refusal("path", f"path {shown!r} is not open"), grant)
    if call.method not in route.methods:
        raise access.refuse(
            rules.Refusal("path", f"{call.method} is not open; open: {', '.join(route.methods)}"),
            grant,
        )
    fields = d.offered
    if call.fields is not None:
        refusal = rules.unlicensed_fields(grant.policy, call.fields)
        if refusal is None and d.offered is not None and not d.offered.issuperset(call.fields):
            extra = ", ".join(sorted(set(call.fields) - d.offered))
            refusal = rules.Refusal("fields", f"fields not licensed or not offered: {extra}")
        if refusal is not None:
            raise access.refuse(refusal, grant)
        fields = frozenset(call.fields) if d.offered is None else d.offered & set(call.fields)
    return route, path, fields


def admit(d: Decision, call: CallIn, now: datetime, meter: Meter, limiter: RateLimiter) -> Admitted:
    """Judge the call (``judge``), then take its place under the contract's rate and
    count limits: the admitted call with its count reservation, or the refusal raised.

    The count reservation reads the store when the meter's total is due for a refresh
    (``Meter.refresh_due``); otherwise nothing here does I/O."""
    route, path, fields = judge(d, call, now)
    grant = d.grant
    contract_id = grant.contract_id
    rate = grant.policy.rate
    wait = limiter.acquire(contract_id, rate.max_per_second, rate.max_per_minute)
    if wait > 0:
        raise RateLimited(
            f"the contract's rate limit is reached; retry in {wait:.3f} s",
            retry_after=retry_after(wait),
            contract_id=contract_id,
        )
    limit = d.count_limit
    reservation = meter.reserve(contract_id, "call", 1, limit)
    if reservation is None:
        used = meter.used(contract_id, "call", refresh=False)
        raise access.refuse(
            rules.Refusal("count", f"calls: {used} used of {limit} under the contract"), grant
        )
    left = None
    if limit is not None:
        left = max(0, limit - meter.used(contract_id, "call", refresh=False) - 1)
    target = Target(
        url=route.base_url + path,
        auth_header=route.auth_header,
        auth_value=route.auth_value,
        timeout=route.timeout,
        fields=fields,
    )
    return Admitted(grant, target, reservation, left)


# Responses --------------------------------------------------------------------------------


class Unfilterable(Exception):
    """The upstream's response is not JSON whose fields can be named."""


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def filter_fields(body: bytes, content_type: str | None, fields: frozenset[str] | None) -> bytes:
    """The response with the fields not allowed removed; ``Unfilterable`` when a
    restriction applies and the body is not a JSON object or list of objects."""
    if fields is None:
        return body
    if not _is_json(content_type):
        raise Unfilterable("the response is not JSON, so its fields cannot be restricted")
    try:
        doc = json.loads(body)
    except ValueError:
        raise Unfilterable("the response is not valid JSON") from None
    if isinstance(doc, dict):
        if fields.issuperset(doc):
            return body  # nothing to strip: relayed as the upstream wrote it
        out: Any = {k: v for k, v in doc.items() if k in fields}
    elif isinstance(doc, list) and all(isinstance(x, dict) for x in doc):
        if all(fields.issuperset(x) for x in doc):
            return body
        out = [{k: v for k, v in x.items() if k in fields} for x in doc]
    else:
        raise Unfilterable("the response is JSON but neither an object nor a list of objects")
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()
