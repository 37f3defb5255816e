"""Health, readiness, request ids and structured logs."""

from __future__ import annotations

import io
import json
import logging

import httpx

from databourse.logs import JsonFormatter
from tests.conftest import Exchange


def test_health_and_readiness(exchange: Exchange) -> None:
    with httpx.Client(base_url=exchange.base_url) as c:
        assert c.get("/health").json() == {"status": "ok"}
        r = c.get("/ready")
    assert r.status_code == 200
    assert r.json()["database"] == "ok"


def test_every_response_and_problem_carries_the_request_id(exchange: Exchange) -> None:
    with exchange.client() as c:
        r = c.get("/me", headers={"X-Request-ID": "trace-12345678"})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == "trace-12345678"
    assert r.json()["request_id"] == "trace-12345678"
    with exchange.client() as c:
        r = c.get("/me", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces"
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_logs_are_json_lines_with_the_request_id_and_no_secrets(exchange: Exchange) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("databourse")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with exchange.client() as c:
            c.post(
                "/auth/login",
                json={"email": "nobody@x.example", "password": "s3cret-pw-xyz"},
                headers={"X-Request-ID": "login-trace-0001"},
            )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "login-trace-0001"]
    assert mine, lines
    assert mine[-1]["path"] == "/api/v1/auth/login"
    assert mine[-1]["status"] == 401
    assert "s3cret-pw-xyz" not in stream.getvalue()
