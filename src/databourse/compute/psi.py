"""Private set intersection: Diffie–Hellman PSI over Curve25519 (pure computation, no I/O).

Two parties learn how many items their sets share (``reveal="cardinality"``), or the
*initiator* learns which of its own items the *responder* also holds
(``reveal="intersection"``). The exchange relays two messages as opaque bytes; it sees set
sizes, never items. This is the classic commutative-blinding protocol (Meadows 1986;
Huberman, Franklin and Hogg 1999), secure against semi-honest parties.

Protocol, with H the hash to the group and [k]P scalar multiplication:

1. The initiator draws a session key ``a`` and a public 32-byte salt, puts its distinct
   items in a random order, and sends [a]H(x) for each item x (``request``).
2. The responder draws ``b`` and returns [b]([a]H(x)) for each element of the request,
   in the request's order when the intersection is revealed and shuffled when only the
   cardinality is, followed by [b]H(y) for each of its own items y, shuffled (``reply``).
3. The initiator computes [a]([b]H(y)) and compares: [ab]H(x) = [ba]H(y) exactly when
   x = y (``finish``).

The group. Curve25519 is v² = u³ + 486662u² + u over F_p, p = 2^255 − 19. It has 8ℓ
points with ℓ = 2^252 + 27742317777372353535851937790883648493 prime; its quadratic twist
has 4ℓ′ points with ℓ′ = 2^253 − 55484635554744707071703875581767296995 prime. Let G be
the subgroup of order ℓ on the curve. With the default ``group="x25519"``, elements are
u-coordinates, the x-only form of RFC 7748, so P and −P are one element.

- Hashing. H(x) is libsodium's ``crypto_core_ed25519_from_uniform`` (Elligator 2 on the
  birationally equivalent edwards25519, then multiplication by the cofactor 8) applied to
  BLAKE2b-256 of the item's UTF-8 keyed with the session salt (and personalised with this
  protocol's and the group's names), mapped to u = (1 + y) / (1 − y). So every hashed
  point lies in G. Hashing straight to a random u-coordinate would be cheaper but unsafe:
  about half of all u-coordinates lie on the twist, which side a u-coordinate is on is
  public (a Legendre symbol), and scalar multiplication keeps the side, so every
  blinded element would reveal one bit of its item's hash: enough to filter a
  dictionary of guesses by half per element and per session. One Elligator map is a
  nonuniform encoding (RFC 9380's ``encode_to_curve``); DH-PSI's privacy argument needs
  hashed points of unknown discrete logarithm that a proof can plant, which the map's
  efficient inverse and bounded preimages allow, not uniformity (docs/psi.md).
- Blinding. X25519(k, u) = x([s]P) where the clamped scalar s = 8·k′, 2^251 ≤ k′ < 2^252,
  is drawn afresh for each session. On G, multiplication by s is a bijection, so
  blinding introduces no collisions and [s]P = ±[s]Q only if P = ±Q.
- Commutativity. The Montgomery ladder computes x([s]P) for any P on the curve or its
  twist, and [s][t]P = [t][s]P, so X25519(a, X25519(b, u)) = X25519(b, X25519(a, u)).
- Elements from the other party. Checking that a received u is in G costs one more
  multiplication by ℓ, and is not needed: s is a multiple of 8, so X25519 sends any curve
  point into G (the cofactor is cleared) and any twist point into the twist's subgroup of
  prime order ℓ′ ≈ 2^253, where discrete logarithms are as hard (Curve25519's twist
  security). A point of order 1, 2, 4 or 8 goes to the neutral element, u = 0; OpenSSL
  refuses that all-zero result, and such a message is rejected. Encodings X25519 never
  outputs (u ≥ p, top bit set) are rejected when the message is read.
- Collisions. Distinct items collide only if their hashed points are equal up to sign:
  probability about 2·|X|·|Y| / ℓ, below 2^-200 at the largest sizes allowed.

So honest elements always live in a group of prime order ℓ (up to the sign identification
of x-only arithmetic); the one departure from a textbook prime-order group is that the
blinding scalar ranges over the 2^251 clamped values rather than all of Z_ℓ, the same
assumption X25519 key agreement rests on. ``group="edwards25519"`` is the textbook
variant: canonical encodings of points of G on edwards25519, scalars uniform in [1, ℓ),
and libsodium's ``crypto_scalarmult_ed25519_noclamp``, which refuses anything that is not
a point of G of order ℓ. It is two to three times slower end to end.

Messages. A header (magic ``DBPS``, version, kind, group, reveal, session salt, counts; a
reply also carries the request's digest, which binds it to the request) is followed by
the packed 32-byte elements and a BLAKE2b-256 digest of everything before it. The digest
catches truncation and corruption; it does not authenticate (anyone can recompute it),
which is the channel's job. Every defect raises :class:`InvalidPSIInput`.

Items are strings, hashed as their exact UTF-8: nothing is normalised or stripped, so
``"A1"``, ``"a1"`` and ``" A1"`` are three items. Duplicates are dropped (set semantics);
an empty set is valid. A session object is single-use and its key never leaves it, except
that with ``workers > 1`` each call hands it to worker processes of this machine that end
with the call.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import multiprocessing
import os
import struct
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from typing import Literal, NoReturn, cast

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from nacl import bindings as sodium
from nacl.exceptions import CryptoError

from databourse.compute.errors import InvalidPSIInput

__all__ = [
    "ELEMENT_BYTES",
    "GROUPS",
    "MAX_ITEMS",
    "REVEALS",
    "VERSION",
    "Header",
    "Initiator",
    "Responder",
    "hash_to_group",
    "read_header",
    "transcript_items",
]

Reveal = Literal["cardinality", "intersection"]

VERSION = 1  # of the message format and the hashing; a change of either is a new version
MAX_ITEMS = 2**22  # distinct items per side, and elements per block of a message
GROUPS = ("x25519", "edwards25519")
REVEALS: tuple[Reveal, ...] = ("cardinality", "intersection")
ELEMENT_BYTES = 32
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the order of G
_MAGIC = b"DBPS"
_KINDS = {1: "request", 2: "reply"}
_REQUEST = struct.Struct(">4sBBBB32sI")  # magic, version, kind, group, reveal, salt, n
_REPLY = struct.Struct(">4sBBBB32s32sII")  # … salt, request digest, n re-blinded, m own
_DIGEST_BYTES = 32
_SALT_BYTES = 32
_HASH_PERSON = b"databourse-psi-1"  # BLAKE2b personalisation (16 bytes): item hashing
_DIGEST_PERSON = b"databourse-psi-m"  # … and message digests
_Y_MASK = (1 << 255) - 1  # an edwards25519 encoding: y in the low 255 bits, sign of x on top
_CHUNK = 1 << 16  # elements per task handed to a worker process (about 2–5 s of work)
_MIN_PARALLEL = 1 << 15  # fewer elements than this: worker processes cost more than they save


def _fail(detail: str) -> NoReturn:
    raise InvalidPSIInput(detail)


# --- the groups ---------------------------------------------------------------------------


def _uniform(item: bytes, salt: bytes, group: str) -> bytes:
    """32 uniform bytes for an item, keyed with the session salt, one value per group."""
    return hashlib.blake2b(
        item, digest_size=32, key=salt, person=_HASH_PERSON, salt=group.encode()[:16]
    ).digest()


def _montgomery(points: list[bytes]) -> list[bytes]:
    """The Curve25519 u-coordinate (1 + y) / (1 − y) of each edwards25519 point; one field
    inversion for the whole batch (Montgomery's trick), as an inversion in Python costs
    about half an X25519 multiplication and a multiplication mod p a hundredth of one."""
    ys = [int.from_bytes(q, "little") & _Y_MASK for q in points]
    dens = [(1 - y) % P or 1 for y in ys]  # y = 1 is the neutral point: u = 0 below
    prefix = []
    acc = 1
    for d in dens:
        prefix.append(acc)
        acc = acc * d % P
    inv = pow(acc, -1, P)  # 1 / (d_0 ⋯ d_{n−1})
    out = [b""] * len(ys)
    for i in range(len(ys) - 1, -1, -1):
        u = 0 if ys[i] == 1 else (1 + ys[i]) * inv * prefix[i] % P
        inv = inv * dens[i] % P
        out[i] = u.to_bytes(32, "little")
    return out


def _hash_points(items: list[bytes], salt: bytes, group: str) -> list[bytes]:
    edwards = [sodium.crypto_core_ed25519_from_uniform(_uniform(x, salt, group)) for x in items]
    return _montgomery(edwards) if group == "x25519" else edwards


def _multiply(group: str, key: bytes, elements: list[bytes]) -> list[bytes] | None:
    """[key]·each element; None if one is refused (low order, or not in the group)."""
    if group == "x25519":
        secret = X25519PrivateKey.from_private_bytes(key)
        load = X25519PublicKey.from_public_bytes
        try:
            return [secret.exchange(load(u)) for u in elements]
        except ValueError:  # OpenSSL refuses an all-zero result: a point of low order
            return None
    mul = sodium.crypto_scalarmult_ed25519_noclamp
    try:
        return [mul(key, q) for q in elements]
    except CryptoError:  # not a canonical point of the prime-order subgroup
        return None


def _new_key(group: str) -> bytes:
    if group == "x25519":
        return os.urandom(32)  # X25519 clamps it
    while True:
        key = sodium.crypto_core_ed25519_scalar_reduce(os.urandom(64))
        if any(key):
            return key


def hash_to_group(item: str, salt: bytes, group: str = "x25519") -> bytes:
    """The unblinded group element of one item in a session with this salt: never sent,
    computed here for tests and audits of transcripts."""
    _check_group(group)
    return _hash_points([item.encode("utf-8")], salt, group)[0]


# --- batches, and worker processes ---------------------------------------------------------


def _split(packed: bytes) -> list[bytes]:
    return [packed[i : i + ELEMENT_BYTES] for i in range(0, len(packed), ELEMENT_BYTES)]


def _task(op: str, group: str, key: bytes, salt: bytes, data: list[bytes] | bytes) -> bytes | None:
    """One batch: hash items then blind them (``op="hash"``, data = encoded items), or
    multiply packed elements (``op="mul"``). Packed bytes out, or None if refused."""
    if op == "hash":
        assert isinstance(data, list)
        points = _hash_points(data, salt, group)
    else:
        assert isinstance(data, bytes)
        points = _split(data)
    out = _multiply(group, key, points)
    return None if out is None else b"".join(out)


@dataclass(frozen=True)
class _Job:
    """Items to hash and blind (``op="hash"``, data = their UTF-8), or packed elements to
    multiply (``op="mul"``)."""

    op: Literal["hash", "mul"]
    data: list[bytes] | bytes
    salt: bytes = b""

    @property
    def size(self) -> int:
        return len(self.data) if self.op == "hash" else len(self.data) // ELEMENT_BYTES

    def chunks(self, size: int) -> list[list[bytes] | bytes]:
        step = size if self.op == "hash" else size * ELEMENT_BYTES
        return [self.data[i : i + step] for i in range(0, len(self.data), step)] or [self.data]


def _compute(group: str, key: bytes, jobs: list[_Job], workers: int) -> list[bytes]:
    """Each job's packed results, in large chunks across worker processes when there are
    enough elements to be worth it. Processes rather than threads: the multiplication
    through ``cryptography`` holds the GIL. They are spawned (not forked), which is safe
    in a multi-threaded server, and live for this call only (one pool for all the jobs)."""
    total = sum(j.size for j in jobs)
    if workers <= 1 or total < _MIN_PARALLEL:
        results = [_task(j.op, group, key, j.salt, j.data) for j in jobs]
    else:
        size = min(_CHUNK, max(_MIN_PARALLEL // 8, math.ceil(total / (4 * workers))))
        split = [j.chunks(size) for j in jobs]
        tasks = [(j.op, j.salt, c) for j, cs in zip(jobs, split, strict=True) for c in cs]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
            parts = iter(
                pool.map(
                    _task,
                    [op for op, _, _ in tasks],
                    repeat(group),
                    repeat(key),
                    [salt for _, salt, _ in tasks],
                    [c for _, _, c in tasks],
                )
            )
            results = []
            for cs in split:
                mine = [next(parts) for _ in cs]
                done = [p for p in mine if p is not None]
                results.append(b"".join(done) if len(done) == len(mine) else None)
    if any(r is None for r in results):
        _fail("a group element was refused: it is of low order or not in the group")
    return [r for r in results if r is not None]


def _permutation(n: int) -> np.ndarray:
    """A uniformly random permutation of range(n) from the OS's CSPRNG: indices sorted by
    128-bit random keys (a tie, which would bias the order, has probability < n²/2^129)."""
    keys = np.frombuffer(os.urandom(16 * n), dtype=np.uint64).reshape(2, n)
    return np.lexsort(keys)


def _shuffled(packed: bytes) -> bytes:
    elements = np.frombuffer(packed, dtype=f"V{ELEMENT_BYTES}")
    return elements[_permutation(len(elements))].tobytes()


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What a message says about itself: all the relay can learn from it."""

    kind: Literal["request", "reply"]
    version: int
    group: str
    reveal: Reveal
    salt: bytes  # the session's public salt, chosen by the initiator
    initiator_count: int  # elements from the initiator's set: blinded, or re-blinded
    responder_count: int  # elements from the responder's set (0 in a request)
    request_digest: bytes | None  # a reply: the digest of the request it answers
    digest: bytes  # this message's own digest (its last 32 bytes)


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_DIGEST_BYTES, person=_DIGEST_PERSON).digest()


def _seal(header: bytes, *blocks: bytes) -> bytes:
    body = b"".join((header, *blocks))
    return body + _digest(body)


def _pack_request(group: str, reveal: Reveal, salt: bytes, elements: bytes) -> bytes:
    n = len(elements) // ELEMENT_BYTES
    head = _REQUEST.pack(
        _MAGIC, VERSION, 1, GROUPS.index(group) + 1, REVEALS.index(reveal) + 1, salt, n
    )
    return _seal(head, elements)


def _pack_reply(request: Header, reblinded: bytes, own: bytes) -> bytes:
    head = _REPLY.pack(
        _MAGIC,
        VERSION,
        2,
        GROUPS.index(request.group) + 1,
        REVEALS.index(request.reveal) + 1,
        request.salt,
        request.digest,
        len(reblinded) // ELEMENT_BYTES,
        len(own) // ELEMENT_BYTES,
    )
    return _seal(head, reblinded, own)


def _code(value: int, names: tuple[str, ...], what: str) -> str:
    if not 1 <= value <= len(names):
        _fail(f"not a PSI message: unknown {what} code {value}")
    return names[value - 1]


def _read(message: bytes) -> tuple[Header, bytes]:
    """The header and the packed elements of a message, after every check of form."""
    if not isinstance(message, bytes | bytearray | memoryview):
        _fail(f"a PSI message is bytes, not {type(message).__name__}")
    message = bytes(message)
    if len(message) < 6 or message[:4] != _MAGIC:
        _fail("not a PSI message")
    if message[4] != VERSION:
        _fail(f"PSI message version {message[4]} is not supported (this is version {VERSION})")
    kind = _KINDS.get(message[5])
    if kind is None:
        _fail(f"not a PSI message: unknown kind {message[5]}")
    shape = _REQUEST if kind == "request" else _REPLY
    if len(message) < shape.size + _DIGEST_BYTES:
        _fail("the PSI message is truncated")
    if kind == "request":
        _, version, _, g, r, salt, n = _REQUEST.unpack_from(message)
        request_digest, m = None, 0
    else:
        _, version, _, g, r, salt, request_digest, n, m = _REPLY.unpack_from(message)
    group = _code(g, GROUPS, "group")
    reveal = cast(Reveal, _code(r, REVEALS, "reveal"))
    if n > MAX_ITEMS or m > MAX_ITEMS:
        _fail(f"the PSI message carries more than {MAX_ITEMS:,} elements per set")
    expected = shape.size + ELEMENT_BYTES * (n + m) + _DIGEST_BYTES
    if len(message) != expected:
        _fail(f"the PSI message has {len(message):,} bytes where its header says {expected:,}")
    body, digest = message[:-_DIGEST_BYTES], message[-_DIGEST_BYTES:]
    if not hmac.compare_digest(_digest(body), digest):
        _fail("the PSI message is corrupted: its digest does not match")
    elements = body[shape.size :]
    if group == "x25519" and not _canonical(elements):
        _fail("the PSI message carries an element that is not a canonical u-coordinate")
    kind_ = cast(Literal["request", "reply"], kind)
    return Header(kind_, version, group, reveal, salt, n, m, request_digest, digest), elements


def _canonical(packed: bytes) -> bool:
    """Every 32-byte little-endian u below p = 2^255 − 19, as X25519 outputs always are."""
    rows = np.frombuffer(packed, dtype=np.uint8).reshape(-1, ELEMENT_BYTES)
    top = rows[:, 31]
    if (top > 0x7F).any():
        return False
    edge = rows[top == 0x7F]  # 2^255 − 19 ≤ u < 2^255: 0x7f, thirty 0xff, then ≥ 0xed
    return not ((edge[:, 1:31] == 0xFF).all(axis=1) & (edge[:, 0] >= 0xED)).any()


def _distinct_elements(packed: bytes, what: str) -> list[bytes]:
    elements = _split(packed)
    if len(set(elements)) != len(elements):
        _fail(f"the PSI message repeats an element of the {what}'s set")
    return elements


def read_header(message: bytes) -> Header:
    """The header of a request or reply, after checking the whole message's form. What the
    relay, the nodes and audits may read: sizes, group, mode, session salt."""
    return _read(message)[0]


def transcript_items(message: bytes) -> list[bytes]:
    """The group elements a message carries, in order (for tests and audits)."""
    return _split(_read(message)[1])


# --- the parties -------------------------------------------------------------------------


def _check_group(group: str) -> str:
    if group not in GROUPS:
        _fail(f"unknown PSI group {group!r}; one of {', '.join(GROUPS)}")
    return group


def _check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, not {workers!r}")
    return workers


def _distinct(items: Iterable[str]) -> tuple[list[str], list[bytes]]:
    """The distinct items in a random order, and their UTF-8."""
    if isinstance(items, str | bytes | bytearray | memoryview):
        _fail("PSI items are an iterable of strings, not a single string or bytes")
    try:
        iterator = iter(items)
    except TypeError:
        _fail(f"PSI items are an iterable of strings, not {type(items).__name__}")
    seen: set[str] = set()
    for x in iterator:
        if not isinstance(x, str):
            _fail(f"PSI items are strings; got {type(x).__name__}")
        seen.add(x)
        if len(seen) > MAX_ITEMS:
            _fail(f"a PSI set holds at most {MAX_ITEMS:,} distinct items")
    unique = list(seen)
    ordered = [unique[i] for i in _permutation(len(unique))]
    try:
        encoded = [x.encode("utf-8") for x in ordered]
    except UnicodeEncodeError as exc:
        _fail(f"a PSI item is not valid Unicode text (lone surrogate?): {exc.reason}")
    return ordered, encoded


class _Session:
    """A key that is used for one session and cannot be pickled, copied or printed."""

    _key: bytes

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"a {type(self).__name__} holds a session key; it cannot be copied")

    def _take_key(self) -> bytes:
        key, self._key = self._key, b""
        return key


class Initiator(_Session):
    """The party that learns the result: ``request()``, then ``finish(reply)``."""

    def __init__(
        self,
        items: Iterable[str],
        *,
        reveal: Reveal,
        group: str = "x25519",
        workers: int = 1,
    ) -> None:
        if reveal not in REVEALS:
            _fail(f"reveal must be one of {', '.join(REVEALS)}, not {reveal!r}")
        self.reveal: Reveal = reveal
        self.group = _check_group(group)
        self.workers = _check_workers(workers)
        self._items, self._encoded = _distinct(items)
        self._salt = os.urandom(_SALT_BYTES)
        self._key = _new_key(group)
        self._request_digest: bytes | None = None
        self._state = "new"  # → "sent" → "done"

    def __repr__(self) -> str:
        return (
            f"Initiator(group={self.group!r}, reveal={self.reveal!r}, "
            f"items={len(self._items)}, state={self._state!r})"
        )

    def request(self) -> bytes:
        """Message 1: the items hashed to the group and blinded with this session's key."""
        if self._state != "new":
            _fail("this PSI session has already sent its request; start a new Initiator")
        self._state = "sent"
        encoded, self._encoded = self._encoded, []
        [blinded] = _compute(
            self.group, self._key, [_Job("hash", encoded, self._salt)], self.workers
        )
        message = _pack_request(self.group, self.reveal, self._salt, blinded)
        self._request_digest = message[-_DIGEST_BYTES:]
        return message

    def finish(self, reply: bytes) -> int | list[str]:
        """The cardinality, or this party's items that the responder also holds (sorted).

        A reply that fails the checks of form leaves the session waiting for a good one;
        once the key has been applied to a reply's elements, the session is over."""
        if self._state == "new":
            _fail("this PSI session has not sent its request yet")
        if self._state == "done":
            _fail("this PSI session is finished; start a new Initiator")
        header, elements = _read(reply)
        if header.kind != "reply":
            _fail(f"expected a PSI reply, got a {header.kind}")
        if header.request_digest != self._request_digest or header.salt != self._salt:
            _fail("this PSI reply answers another request")
        if (header.group, header.reveal) != (self.group, self.reveal):
            _fail("the PSI reply's group or reveal mode differs from the request's")
        if header.initiator_count != len(self._items):
            _fail("the PSI reply does not re-blind every element of the request")
        cut = header.initiator_count * ELEMENT_BYTES
        mine = _distinct_elements(elements[:cut], "initiator")
        _distinct_elements(elements[cut:], "responder")
        self._state = "done"
        key = self._take_key()
        [raised] = _compute(self.group, key, [_Job("mul", elements[cut:])], self.workers)
        theirs = set(_split(raised))
        if self.reveal == "cardinality":
            return sum(e in theirs for e in mine)
        return sorted(x for x, e in zip(self._items, mine, strict=True) if e in theirs)


class Responder(_Session):
    """The other party: ``reply(request)``; it learns the size of the initiator's set."""

    def __init__(self, items: Iterable[str], *, group: str = "x25519", workers: int = 1) -> None:
        self.group = _check_group(group)
        self.workers = _check_workers(workers)
        _, self._encoded = _distinct(items)
        self._count = len(self._encoded)
        self._key = _new_key(group)
        self._state = "new"  # → "done"

    def __repr__(self) -> str:
        return f"Responder(group={self.group!r}, items={self._count}, state={self._state!r})"

    def reply(self, request: bytes) -> bytes:
        """Message 2: the request re-blinded (shuffled unless the intersection is revealed),
        then this party's items hashed with the request's salt and blinded, shuffled."""
        if self._state != "new":
            _fail("this PSI session has already replied; start a new Responder")
        header, elements = _read(request)
        if header.kind != "request":
            _fail(f"expected a PSI request, got a {header.kind}")
        if header.group != self.group:
            _fail(f"the PSI request uses group {header.group}, this responder {self.group}")
        _distinct_elements(elements, "initiator")
        self._state = "done"
        key = self._take_key()
        encoded, self._encoded = self._encoded, []
        jobs = [_Job("mul", elements), _Job("hash", encoded, header.salt)]
        reblinded, own = _compute(self.group, key, jobs, self.workers)
        if header.reveal == "cardinality":
            reblinded = _shuffled(reblinded)
        return _pack_reply(header, reblinded, own)
