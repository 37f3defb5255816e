"""Bad input gets a problem+json naming the failing fields, never a stack trace."""

from __future__ import annotations

import pytest

from tests import factories
from tests.conftest import Exchange

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"uscc": "91350100M000100Y44"}, ["body", "uscc"]),
        ({"uscc": 913501}, ["body", "uscc"]),
        ({"compliance_commitment": "yes"}, ["body", "compliance_commitment"]),
        ({"requested_roles": ["operator"]}, ["body", "requested_roles"]),
        ({"requested_roles": []}, ["body", "requested_roles"]),
        ({"unexpected": 1}, ["body", "unexpected"]),
        (
            {"contacts": [{"name": "x", "email": "not-an-email", "phone": "12345"}]},
            ["body", "contacts", 0, "email"],
        ),
    ],
)
def test_invalid_application_fields_are_named(
    exchange: Exchange, change: dict[str, object], loc: list[object]
) -> None:
    with exchange.client() as c:
        r = c.post("/applications", json=factories.application(**change))
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"] == "urn:databourse:problem:validation"
    assert loc in [e["loc"] for e in body["errors"]]
    assert "Traceback" not in r.text
    assert factories.PASSWORD not in r.text  # rejected input is never echoed


def test_password_is_not_echoed_when_invalid(exchange: Exchange) -> None:
    body = factories.application()
    body["admin"]["password"] = "short-pw"
    with exchange.client() as c:
        r = c.post("/applications", json=body)
    assert r.status_code == 422
    assert "short-pw" not in r.text


def test_malformed_json(exchange: Exchange) -> None:
    with exchange.client() as c:
        r = c.post(
            "/applications", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert r.status_code == 422
    assert r.json()["type"] == "urn:databourse:problem:validation"


def test_oversized_body(exchange: Exchange) -> None:
    with exchange.client() as c:
        r = c.post("/applications", json=factories.application(name="x" * 100_000))
        assert r.status_code == 413
        assert r.json()["type"] == "urn:databourse:problem:payload-too-large"

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(100):
                yield b"x" * 1000

        r = c.post("/applications", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.headers["content-type"] == PROBLEM


def test_unknown_route_and_method(exchange: Exchange) -> None:
    with exchange.client() as c:
        r = c.get("/no-such-thing")
        assert r.status_code == 404
        assert r.json()["type"] == "urn:databourse:problem:not-found"
        r = c.delete("/applications")
        assert r.status_code == 405
        assert r.json()["type"] == "urn:databourse:problem:method-not-allowed"
