"""Signed requests and answers between the exchange and a node (real Ed25519)."""

from __future__ import annotations

import secrets

import pytest

from databourse.compute import nodeauth

EXCHANGE = nodeauth.private_key(secrets.token_bytes(32))
NODE = nodeauth.private_key(secrets.token_bytes(32))
EXCHANGE_PUB = nodeauth.public_key(nodeauth.public_text(EXCHANGE))
NODE_PUB = nodeauth.public_key(nodeauth.public_text(NODE))
BODY = b'{"sql":"SELECT COUNT(*) FROM t"}'
ME = nodeauth.public_text(NODE)  # the node the requests are for


def test_a_signed_request_verifies_and_gives_its_nonce() -> None:
    h = nodeauth.sign_request(EXCHANGE, ME, "POST", "/node/v1/sql", BODY, at=1_000_000)
    nonce = nodeauth.verify_request(
        EXCHANGE_PUB, ME, "POST", "/node/v1/sql", BODY, h, now=1_000_010
    )
    assert nonce == h[nodeauth.NONCE]


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", "/node/v1/sql", BODY),  # another method
        ("POST", "/node/v1/psi/reply", BODY),  # another step
        ("POST", "/node/v1/sql", BODY + b" "),  # another body
    ],
)
def test_any_change_to_a_signed_request_is_refused(method: str, target: str, body: bytes) -> None:
    h = nodeauth.sign_request(EXCHANGE, ME, "POST", "/node/v1/sql", BODY, at=1_000_000)
    with pytest.raises(nodeauth.NodeAuthFailed, match="does not match"):
        nodeauth.verify_request(EXCHANGE_PUB, ME, method, target, body, h, now=1_000_000)


def test_a_request_signed_by_another_key_is_refused() -> None:
    h = nodeauth.sign_request(NODE, ME, "POST", "/node/v1/sql", BODY, at=1_000_000)
    with pytest.raises(nodeauth.NodeAuthFailed):
        nodeauth.verify_request(EXCHANGE_PUB, ME, "POST", "/node/v1/sql", BODY, h, now=1_000_000)


def test_stale_and_future_requests_are_refused() -> None:
    h = nodeauth.sign_request(EXCHANGE, ME, "POST", "/x", BODY, at=1_000_000)
    for now in (1_000_000 + nodeauth.MAX_SKEW + 1, 1_000_000 - nodeauth.MAX_SKEW - 1):
        with pytest.raises(nodeauth.NodeAuthFailed, match="too old"):
            nodeauth.verify_request(EXCHANGE_PUB, ME, "POST", "/x", BODY, h, now=now)


def test_missing_headers_are_refused_by_name() -> None:
    h = nodeauth.sign_request(EXCHANGE, ME, "POST", "/x", BODY)
    del h[nodeauth.SIGNATURE]
    with pytest.raises(nodeauth.NodeAuthFailed, match=nodeauth.SIGNATURE):
        nodeauth.verify_request(EXCHANGE_PUB, ME, "POST", "/x", BODY, h)


def test_an_answer_is_bound_to_its_request_nonce_status_and_body() -> None:
    sig = nodeauth.sign_response(NODE, "nonce-aaaaaaaaaaaaaaaa", 200, b"{}")
    nodeauth.verify_response(NODE_PUB, "nonce-aaaaaaaaaaaaaaaa", 200, b"{}", sig)
    for nonce, status, body in (
        ("nonce-bbbbbbbbbbbbbbbb", 200, b"{}"),  # replayed for another request
        ("nonce-aaaaaaaaaaaaaaaa", 422, b"{}"),
        ("nonce-aaaaaaaaaaaaaaaa", 200, b'{"rows":[]}'),
    ):
        with pytest.raises(nodeauth.NodeAuthFailed):
            nodeauth.verify_response(NODE_PUB, nonce, status, body, sig)
    with pytest.raises(nodeauth.NodeAuthFailed, match="not signed"):
        nodeauth.verify_response(NODE_PUB, "nonce-aaaaaaaaaaaaaaaa", 200, b"{}", None)


def test_a_nonce_is_accepted_once() -> None:
    seen = nodeauth.Nonces()
    assert seen.first_use("n-0123456789abcdef", now=100.0)
    assert not seen.first_use("n-0123456789abcdef", now=101.0)
    # forgotten only after twice the skew window, when its request is stale anyway
    assert seen.first_use("n-other-0123456789", now=100.0 + 2 * nodeauth.MAX_SKEW + 1)


def test_a_malformed_public_key_is_refused() -> None:
    with pytest.raises(nodeauth.NodeAuthFailed):
        nodeauth.public_key("c2hvcnQ")


def test_a_request_for_one_node_is_refused_by_another() -> None:
    other = nodeauth.public_text(nodeauth.private_key(secrets.token_bytes(32)))
    h = nodeauth.sign_request(EXCHANGE, other, "POST", "/node/v1/sql", BODY, at=1_000_000)
    with pytest.raises(nodeauth.NodeAuthFailed, match="does not match"):
        nodeauth.verify_request(EXCHANGE_PUB, ME, "POST", "/node/v1/sql", BODY, h, now=1_000_000)
