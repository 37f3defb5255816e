"""Private set intersection: correctness, what the transcript hides, and refusals.

Real cryptography throughout. Vectors: RFC 7748 §5.2 (X25519); the group orders and the
low-order u-coordinates of Curve25519 are from Bernstein's Curve25519 paper and its
"ECDH: which public keys to reject" list.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import random

import pytest
from nacl import bindings as sodium

from databourse.compute import psi
from databourse.compute.errors import InvalidPSIInput
from databourse.compute.psi import Initiator, Responder, read_header, transcript_items

A = 486662  # Curve25519: v² = u³ + A·u² + u over F_p


def ids(n: int, prefix: str = "") -> list[str]:
    """n random 16-byte hex ids, distinct with overwhelming probability."""
    raw = os.urandom(16 * n).hex()
    return [prefix + raw[32 * i : 32 * i + 32] for i in range(n)]


def sets(n_a: int, n_b: int, common: int) -> tuple[list[str], list[str], set[str]]:
    shared = ids(common)
    a = shared + ids(n_a - common)
    b = shared + ids(n_b - common)
    random.shuffle(a)
    random.shuffle(b)
    return a, b, set(a) & set(b)


def run(
    a: list[str], b: list[str], reveal: str, group: str = "x25519", workers: int = 1
) -> tuple[int | list[str], bytes, bytes]:
    ini = Initiator(a, reveal=reveal, group=group, workers=workers)  # type: ignore[arg-type]
    request = ini.request()
    reply = Responder(b, group=group, workers=workers).reply(request)
    return ini.finish(reply), request, reply


def reseal(body: bytes) -> bytes:
    """A message with a valid digest around any content: what a dishonest party can send."""
    return body + psi._digest(body)


# --- the group ------------------------------------------------------------------------------


def test_x25519_matches_rfc_7748_vector() -> None:
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    out = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
    assert psi._multiply("x25519", scalar, [u]) == [out]


def test_group_orders() -> None:
    twist = 2**253 - 55484635554744707071703875581767296995
    assert 8 * psi.L + 4 * twist == 2 * psi.P + 2  # #E + #E' = 2(p + 1)


def test_montgomery_map_agrees_with_edwards_arithmetic() -> None:
    """X25519 on the mapped u equals the map of libsodium's (clamped) Edwards product."""
    for _ in range(30):
        point = sodium.crypto_core_ed25519_from_uniform(os.urandom(32))
        key = os.urandom(32)
        [u] = psi._montgomery([point])
        expected = psi._montgomery([sodium.crypto_scalarmult_ed25519(key, point)])
        assert psi._multiply("x25519", key, [u]) == expected


def test_hashed_points_lie_in_the_prime_order_subgroup_never_on_the_twist() -> None:
    salt = os.urandom(32)
    items = ids(200)
    for item in items:
        edwards = sodium.crypto_core_ed25519_from_uniform(
            psi._uniform(item.encode(), salt, "x25519")
        )
        assert sodium.crypto_core_ed25519_is_valid_point(edwards)  # order ℓ
        u = int.from_bytes(psi.hash_to_group(item, salt), "little")
        assert psi.hash_to_group(item, salt) == psi._montgomery([edwards])[0]
        rhs = (u * u * u + A * u * u + u) % psi.P
        assert pow(rhs, (psi.P - 1) // 2, psi.P) == 1  # on the curve: a square
        assert sodium.crypto_core_ed25519_is_valid_point(
            psi.hash_to_group(item, salt, "edwards25519")
        )
    # distinct items, salts and groups give distinct points
    assert len({psi.hash_to_group(x, salt) for x in items}) == len(items)
    assert psi.hash_to_group("a", salt) != psi.hash_to_group("a", os.urandom(32))
    assert psi.hash_to_group("a", salt) != psi.hash_to_group("a", salt, "edwards25519")


# --- correctness ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "n_a", "n_b", "common"),
    [("x25519", 2000, 3000, 700), ("edwards25519", 300, 400, 120)],
)
@pytest.mark.parametrize("reveal", ["cardinality", "intersection"])
def test_agrees_with_set_intersection(
    group: str, reveal: str, n_a: int, n_b: int, common: int
) -> None:
    a, b, expected = sets(n_a, n_b, common)
    result, _, _ = run(a, b, reveal, group)
    if reveal == "cardinality":
        assert result == len(expected) == common
    else:
        assert result == sorted(expected)


@pytest.mark.parametrize("group", psi.GROUPS)
@pytest.mark.parametrize("reveal", ["cardinality", "intersection"])
def test_empty_sets(group: str, reveal: str) -> None:
    empty = 0 if reveal == "cardinality" else []
    some = ids(5)
    assert run([], some, reveal, group)[0] == empty
    assert run(some, [], reveal, group)[0] == empty
    result, request, reply = run([], [], reveal, group)
    assert result == empty
    assert transcript_items(request) == transcript_items(reply) == []


def test_disjoint_and_identical_sets() -> None:
    a = ids(50)
    assert run(a, ids(60), "cardinality")[0] == 0
    assert run(a, a, "cardinality")[0] == 50
    assert run(a, list(reversed(a)), "intersection")[0] == sorted(a)


def test_duplicates_are_dropped() -> None:
    a = ["x", "y", "y", "z", "x"]
    b = ["y", "y", "x", "w"]
    result, request, reply = run(a, b, "cardinality")
    assert result == 2
    assert read_header(request).initiator_count == 3
    assert read_header(reply).responder_count == 3
    assert run(a, b, "intersection")[0] == ["x", "y"]


def test_items_are_exact_text() -> None:
    """Nothing is normalised or stripped: case, spaces and Unicode forms all count."""
    a = ["A1", "é", "tab\t", ""]
    b = ["a1", " A1", "e\u0301", "tab", "", "A1"]
    assert run(a, b, "intersection")[0] == ["", "A1"]


def test_generators_and_sets_are_accepted() -> None:
    a = (f"id{i}" for i in range(30))
    assert run(a, {f"id{i}" for i in range(20, 40)}, "cardinality")[0] == 10  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "items",
    [
        ["a", 1],
        ["a", None],
        [b"a"],
        ["a", ["b"]],
        "abc",
        b"abc",
        42,
        ["\ud800"],  # a lone surrogate has no UTF-8
    ],
)
def test_non_string_items_are_refused(items: object) -> None:
    with pytest.raises(InvalidPSIInput):
        Initiator(items, reveal="cardinality")  # type: ignore[arg-type]
    with pytest.raises(InvalidPSIInput):
        Responder(items)  # type: ignore[arg-type]


def test_too_many_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psi, "MAX_ITEMS", 10)
    Initiator([str(i) for i in range(10)] * 2, reveal="cardinality")  # 10 distinct: fine
    with pytest.raises(InvalidPSIInput, match="at most"):
        Initiator([str(i) for i in range(11)], reveal="cardinality")
    with pytest.raises(InvalidPSIInput, match="at most"):
        Responder(str(i) for i in range(11))
    request = Initiator(ids(6), reveal="cardinality").request()
    monkeypatch.setattr(psi, "MAX_ITEMS", 4)
    with pytest.raises(InvalidPSIInput, match="more than"):
        Responder([]).reply(request)


def test_bad_parameters() -> None:
    with pytest.raises(InvalidPSIInput, match="reveal"):
        Initiator([], reveal="everything")  # type: ignore[arg-type]
    with pytest.raises(InvalidPSIInput, match="group"):
        Initiator([], reveal="cardinality", group="p256")
    with pytest.raises(InvalidPSIInput, match="group"):
        Responder([], group="ristretto")
    for workers in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            Responder([], workers=workers)  # type: ignore[arg-type]


# --- what the transcript shows ----------------------------------------------------------


@pytest.mark.parametrize("group", psi.GROUPS)
@pytest.mark.parametrize("reveal", ["cardinality", "intersection"])
def test_transcript_hides_items_and_their_hashes(group: str, reveal: str) -> None:
    a, b, _ = sets(150, 150, 60)
    _, request, reply = run(a, b, reveal, group)
    salt = read_header(request).salt
    transcript = request + reply
    for item in a + b:
        raw = item.encode()
        assert raw not in transcript
        for i in range(0, len(raw) - 15, 8):
            assert raw[i : i + 16] not in transcript
        digests = [
            hashlib.sha256(raw).digest(),
            hashlib.sha512(raw).digest(),
            hashlib.md5(raw).digest(),
            hashlib.blake2b(raw).digest(),
            hashlib.blake2b(raw, digest_size=32).digest(),
            hashlib.blake2s(raw).digest(),
            psi._uniform(raw, salt, group),  # the salted hash before the map to the group
            psi.hash_to_group(item, salt, group),  # the unblinded point
        ]
        for d in digests:
            for i in range(0, len(d) - 7, 4):
                assert d[i : i + 8] not in transcript
        assert psi.hash_to_group(item, salt, group) not in transcript_items(request)


def test_relay_view_is_the_header() -> None:
    a, b, _ = sets(40, 70, 10)
    ini = Initiator(a, reveal="intersection")
    request = ini.request()
    reply = Responder(b).reply(request)
    h1, h2 = read_header(request), read_header(reply)
    assert (h1.kind, h1.version, h1.group, h1.reveal) == ("request", 1, "x25519", "intersection")
    assert (h1.initiator_count, h1.responder_count, h1.request_digest) == (40, 0, None)
    assert (h2.kind, h2.initiator_count, h2.responder_count) == ("reply", 40, 70)
    assert h2.salt == h1.salt and h2.request_digest == h1.digest == request[-32:]
    assert len(transcript_items(request)) == 40
    assert len(transcript_items(reply)) == 110
    assert len(request) == 44 + 40 * 32 + 32
    assert len(reply) == 80 + 110 * 32 + 32


@pytest.mark.parametrize("group", psi.GROUPS)
def test_cardinality_reply_is_shuffled_intersection_reply_is_not(group: str) -> None:
    for reveal in ("cardinality", "intersection"):
        ini = Initiator(ids(200), reveal=reveal, group=group)  # type: ignore[arg-type]
        request = ini.request()
        resp = Responder(ids(30), group=group)
        b = resp._key  # the test reads the responder's key to check its work
        in_order = psi._multiply(group, b, transcript_items(request))
        assert in_order is not None
        reply = resp.reply(request)
        reblinded = transcript_items(reply)[:200]
        assert sorted(reblinded) == sorted(in_order)  # the request's elements, re-blinded
        if reveal == "cardinality":
            assert reblinded != in_order
            assert sum(x == y for x, y in zip(reblinded, in_order, strict=True)) < 20
        else:
            assert reblinded == in_order


def test_responder_elements_are_shuffled() -> None:
    """Sorted input must not give sorted (or input-ordered) output."""
    items = [f"{i:08d}" for i in range(300)]
    ini = Initiator(["x"], reveal="intersection")
    request = ini.request()
    resp = Responder(items)
    b = resp._key
    salt = read_header(request).salt
    in_input_order = psi._multiply("x25519", b, [psi.hash_to_group(x, salt) for x in items])
    own = transcript_items(resp.reply(request))[1:]
    assert in_input_order is not None and sorted(own) == sorted(in_input_order)
    assert own != in_input_order


@pytest.mark.parametrize("group", psi.GROUPS)
def test_keys_and_salts_are_per_session(group: str) -> None:
    items = ids(100)
    r1 = Initiator(items, reveal="cardinality", group=group).request()
    r2 = Initiator(items, reveal="cardinality", group=group).request()
    assert read_header(r1).salt != read_header(r2).salt
    assert not set(transcript_items(r1)) & set(transcript_items(r2))
    other = ids(50)
    p1 = Responder(other, group=group).reply(r1)
    p2 = Responder(other, group=group).reply(r1)
    assert not set(transcript_items(p1)) & set(transcript_items(p2))
    assert p1 != p2


def test_keys_stay_in_the_object() -> None:
    ini = Initiator(["a"], reveal="cardinality")
    resp = Responder(["a"])
    for session in (ini, resp):
        key = session._key
        assert key.hex() not in repr(session) and str(key) not in repr(session)
        with pytest.raises(TypeError):
            pickle.dumps(session)
        with pytest.raises(TypeError):
            copy.copy(session)
        with pytest.raises(TypeError):
            copy.deepcopy(session)
    ini.finish(resp.reply(ini.request()))
    assert ini._key == resp._key == b""  # dropped once used


# --- refusals -------------------------------------------------------------------------------


def test_each_session_is_used_once() -> None:
    ini = Initiator(["a", "b"], reveal="cardinality")
    with pytest.raises(InvalidPSIInput, match="not sent"):
        ini.finish(b"")
    request = ini.request()
    with pytest.raises(InvalidPSIInput, match="already sent"):
        ini.request()
    resp = Responder(["b"])
    reply = resp.reply(request)
    with pytest.raises(InvalidPSIInput, match="already replied"):
        resp.reply(request)
    assert ini.finish(reply) == 1
    with pytest.raises(InvalidPSIInput, match="finished"):
        ini.finish(reply)


def test_replayed_and_misdirected_messages() -> None:
    old = Initiator(["a", "b"], reveal="cardinality")
    old_request = old.request()
    old_reply = Responder(["a"]).reply(old_request)
    ini = Initiator(["a", "b"], reveal="cardinality")
    request = ini.request()
    with pytest.raises(InvalidPSIInput, match="another request"):
        ini.finish(old_reply)  # a reply to an earlier session
    with pytest.raises(InvalidPSIInput, match="expected a PSI reply"):
        ini.finish(request)
    with pytest.raises(InvalidPSIInput, match="expected a PSI request"):
        Responder(["a"]).reply(old_reply)
    with pytest.raises(InvalidPSIInput, match="group"):
        Responder(["a"], group="edwards25519").reply(request)
    assert ini.finish(Responder(["a"]).reply(request)) == 1  # still usable after refusals


def test_reply_with_another_mode_is_refused() -> None:
    ini = Initiator(["a"], reveal="intersection")
    request = ini.request()
    reply = Responder(["a"]).reply(request)
    body = bytearray(reply[:-32])
    body[7] = 1  # reveal: cardinality
    with pytest.raises(InvalidPSIInput, match=r"another request|reveal"):
        ini.finish(reseal(bytes(body)))


def test_truncated_messages() -> None:
    ini = Initiator(ids(3), reveal="intersection")
    request = ini.request()
    reply = Responder(ids(2)).reply(request)
    for message in (request, reply):
        for n in range(len(message)):
            with pytest.raises(InvalidPSIInput):
                transcript_items(message[:n])
        with pytest.raises(InvalidPSIInput):
            transcript_items(message + b"\x00")
    for n in range(len(reply)):
        with pytest.raises(InvalidPSIInput):
            ini.finish(reply[:n])
    assert ini.finish(reply) == []


def test_every_flipped_bit_is_caught() -> None:
    ini = Initiator(ids(3), reveal="cardinality")
    request = ini.request()
    reply = Responder(ids(2)).reply(request)
    for message in (request, reply):
        for i in range(len(message)):
            for bit in range(8):
                garbled = bytearray(message)
                garbled[i] ^= 1 << bit
                with pytest.raises(InvalidPSIInput):
                    read_header(bytes(garbled))
    garbled = bytearray(reply)
    garbled[100] ^= 1
    with pytest.raises(InvalidPSIInput, match="corrupted"):
        ini.finish(bytes(garbled))
    assert ini.finish(reply) == 0


@pytest.mark.parametrize(
    "message",
    [b"", b"DBPS", b"\x00" * 200, os.urandom(300), b"DBPS\x01\x09" + b"\x00" * 100, "text", None],
)
def test_garbage_is_refused(message: object) -> None:
    with pytest.raises(InvalidPSIInput):
        transcript_items(message)  # type: ignore[arg-type]
    with pytest.raises(InvalidPSIInput):
        Responder(["a"]).reply(message)  # type: ignore[arg-type]


def test_unknown_version_is_refused_even_with_a_valid_digest() -> None:
    request = Initiator(["a"], reveal="cardinality").request()
    body = bytearray(request[:-32])
    body[4] = 2
    with pytest.raises(InvalidPSIInput, match="version 2 is not supported"):
        Responder(["a"]).reply(reseal(bytes(body)))
    for offset, value in ((6, 9), (7, 0), (7, 3)):  # group, reveal codes
        body = bytearray(request[:-32])
        body[offset] = value
        with pytest.raises(InvalidPSIInput, match="unknown"):
            read_header(reseal(bytes(body)))


LOW_ORDER = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    psi.P - 1,
]


def _forged_reply(ini: Initiator, request: bytes, own: list[bytes]) -> bytes:
    """A well-formed reply whose responder block is chosen by a dishonest responder."""
    header = read_header(request)
    honest = Responder([]).reply(request)
    reblinded = b"".join(transcript_items(honest))
    head = psi._REPLY.pack(
        b"DBPS", 1, 2, 1, 1, header.salt, header.digest, header.initiator_count, len(own)
    )
    return reseal(head + reblinded + b"".join(own))


@pytest.mark.parametrize("u", LOW_ORDER)
def test_low_order_elements_are_refused(u: int) -> None:
    ini = Initiator(ids(3), reveal="cardinality")
    request = ini.request()
    honest = transcript_items(Responder(ids(3)).reply(request))[3:]
    with pytest.raises(InvalidPSIInput, match="low order"):
        ini.finish(_forged_reply(ini, request, [*honest, u.to_bytes(32, "little")]))
    # and a request carrying one
    body = bytearray(request[:-32])
    body[44:76] = u.to_bytes(32, "little")
    with pytest.raises(InvalidPSIInput, match="low order"):
        Responder(["a"]).reply(reseal(bytes(body)))


@pytest.mark.parametrize("u", [psi.P, psi.P + 18, 2**255, 2**256 - 1])
def test_non_canonical_elements_are_refused(u: int) -> None:
    ini = Initiator(ids(2), reveal="cardinality")
    request = ini.request()
    with pytest.raises(InvalidPSIInput, match="canonical"):
        ini.finish(_forged_reply(ini, request, [u.to_bytes(32, "little")]))


def test_repeated_elements_are_refused() -> None:
    ini = Initiator(ids(2), reveal="cardinality")
    request = ini.request()
    element = transcript_items(Responder(["z"]).reply(request))[-1]
    with pytest.raises(InvalidPSIInput, match="repeats"):
        ini.finish(_forged_reply(ini, request, [element, element]))
    body = bytearray(request[:-32])
    body[76:108] = body[44:76]
    with pytest.raises(InvalidPSIInput, match="repeats"):
        Responder(["a"]).reply(reseal(bytes(body)))


def test_edwards25519_refuses_points_outside_the_prime_order_subgroup() -> None:
    request = Initiator(["a", "b"], reveal="cardinality", group="edwards25519").request()
    small = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
    point = sodium.crypto_core_ed25519_from_uniform(os.urandom(32))
    mixed = sodium.crypto_core_ed25519_add(point, small)  # has an order-8 component
    for bad in (small, mixed, b"\x00" * 32, b"\xff" * 32):
        body = bytearray(request[:-32])
        body[44:76] = bad
        with pytest.raises(InvalidPSIInput):
            Responder(["a"], group="edwards25519").reply(reseal(bytes(body)))


# --- scale ------------------------------------------------------------------------------------


def test_a_million_items_with_workers() -> None:
    """1,000,000 items against 1,000, in worker processes; the intersection is exact."""
    big = ids(1_000_000)
    small = random.sample(big, 400) + ids(600)
    result, request, reply = run(big, small, "intersection", workers=2)
    assert result == sorted(set(small) & set(big))
    assert read_header(request).initiator_count == 1_000_000
    assert read_header(reply).responder_count == 1_000
