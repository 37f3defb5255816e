"""Signed notes, transparency-log checkpoints and witness cosignatures.

Implements c2sp.org/signed-note (Ed25519, type 0x01), c2sp.org/tlog-checkpoint and the
Ed25519 flavour of c2sp.org/tlog-cosignature (type 0x04). Pure: no I/O and no clock;
cosignature timestamps are passed in by the caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01  # "`0x01` — Ed25519 signatures as specified by this document."
COSIGNATURE_V1 = 0x04  # "`0x04` — Timestamped Ed25519 witness cosignatures"
MAX_SIGNATURES = 100  # "MUST accept at least up to 16 signatures"
MAX_TIMESTAMP = 2**63 - 1  # "It MUST NOT exceed 2^63 - 1"
_DASH = "\u2014 "  # "em dash (U+2014), space (U+0020), key name, space, base64 signature"
_SIZE = re.compile(r"0|[1-9][0-9]*")  # "with no leading zeroes (unless ... the tree size is `0`)"


class NoteError(ValueError):
    """A key, note or checkpoint is malformed, or a signature does not verify."""


def _b64decode(text: str) -> bytes:
    """Strict, canonical standard base64 (RFC 4648, section 4)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError("invalid base64") from None
    if base64.b64encode(raw).decode() != text:
        raise NoteError("non-canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _check_text(text: str, what: str) -> None:
    # "MUST be valid UTF-8 and MUST NOT contain any ASCII control characters ... other than newline"
    try:
        text.encode()
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid UTF-8") from None
    if any(c < " " and c != "\n" for c in text):
        raise NoteError(f"{what} contains a control character")


def _check_name(name: str) -> str:
    # "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus (U+002B)"
    if not name or "+" in name or any(c.isspace() or c < " " for c in name):
        raise NoteError(f"invalid key name {name!r}")
    return name


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """The key ID as an int ("interpreted in big-endian order")."""
    # "key ID = SHA-256(key name || 0x0A || signature type || public key)[:4]"
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _parse_key(text: str, prefix: str) -> tuple[str, int, int, bytes]:
    """Split `<prefix><name>+<hex8 id>+<base64(type || key)>` into name, id, type, key."""
    if not text.startswith(prefix) or text.count("+") < 2 + prefix.count("+"):
        raise NoteError("malformed key")
    name, hex_id, material = text[len(prefix) :].split("+", 2)
    raw = _b64decode(material)
    if not re.fullmatch("[0-9a-f]{8}", hex_id) or len(raw) != 33:
        raise NoteError("malformed key")
    return _check_name(name), int(hex_id, 16), raw[0], raw[1:]


class Verifier:
    """A public key that checks note signatures (type 0x01) or cosignatures (type 0x04)."""

    def __init__(self, name: str, public_key: bytes, sig_type: int = ED25519) -> None:
        if sig_type not in (ED25519, COSIGNATURE_V1) or len(public_key) != 32:
            raise NoteError("unsupported key type or length")
        self.name, self.sig_type, self.public_key = _check_name(name), sig_type, public_key
        self.key_id = key_id(name, sig_type, public_key)
        self._key = Ed25519PublicKey.from_public_bytes(public_key)

    @classmethod
    def from_key(cls, text: str, cosignature: bool = False) -> Verifier:
        """Parse `<name>+<hex8 id>+<base64(type || pubkey)>`; `cosignature` turns a 0x01 key
        into a 0x04 one ("MAY be encoded as vkeys with signature type 0x04")."""
        name, kid, sig_type, pub = _parse_key(text, "")
        if kid != key_id(name, sig_type, pub):
            raise NoteError(f"key id does not match key {name}")
        return cls(name, pub, COSIGNATURE_V1 if cosignature else sig_type)

    @property
    def key(self) -> str:
        """The verifier key text."""
        return f"{self.name}+{self.key_id:08x}+{_b64(bytes([self.sig_type]) + self.public_key)}"

    def verify(self, text: str, raw: bytes) -> int | None:
        """Check `raw` over `text`: NoteError if bad, else the cosignature timestamp or None."""
        message, timestamp = text.encode(), None
        if self.sig_type == COSIGNATURE_V1:
            # "a `timestamped_signature` ... serialized in sequence, ... big-endian order"
            timestamp = int.from_bytes(raw[:8], "big")
            message, raw = _cosigned_message(timestamp, message), raw[8:]
        try:
            if len(raw) != 64 or (timestamp or 0) > MAX_TIMESTAMP:
                raise InvalidSignature
            self._key.verify(raw, message)
        except InvalidSignature:
            raise NoteError(f"invalid signature for key {self.name}+{self.key_id:08x}") from None
        return timestamp


def _cosigned_message(timestamp: int, body: bytes) -> bytes:
    # "two newline (U+000A) terminated lines (one header line and one timestamp line)
    # followed by the whole note body of the cosigned checkpoint"
    return b"cosignature/v1\ntime %d\n" % timestamp + body


class Signer(Verifier):
    """A private Ed25519 key producing note signatures or (type 0x04) cosignatures."""

    def __init__(self, name: str, seed: bytes, sig_type: int = ED25519) -> None:
        if len(seed) != 32:
            raise NoteError("an Ed25519 seed is 32 bytes")
        self._private, self._seed = Ed25519PrivateKey.from_private_bytes(seed), seed
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        super().__init__(name, public, sig_type)

    @classmethod
    def from_key(cls, text: str, cosignature: bool = False) -> Signer:
        """Parse `PRIVATE+KEY+<name>+<hex8 id>+<base64(type || seed)>`."""
        name, kid, sig_type, seed = _parse_key(text, "PRIVATE+KEY+")
        if kid != cls(name, seed, sig_type).key_id:
            raise NoteError(f"key id does not match key {name}")
        return cls(name, seed, COSIGNATURE_V1 if cosignature else sig_type)

    @property
    def private_key(self) -> str:
        """The signer key text (secret)."""
        material = _b64(bytes([self.sig_type]) + self._seed)
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{material}"

    def verifier(self) -> Verifier:
        """The matching public verifier."""
        return Verifier(self.name, self.public_key, self.sig_type)

    def sign(self, text: str, timestamp: int | None = None) -> bytes:
        """Signature bytes (without key id); cosigners need the POSIX `timestamp`."""
        if self.sig_type == ED25519:
            return self._private.sign(text.encode())
        if timestamp is None or not 0 <= timestamp <= MAX_TIMESTAMP:
            raise NoteError("a cosignature needs a timestamp in [0, 2^63 - 1]")
        stamp = timestamp.to_bytes(8, "big")
        return stamp + self._private.sign(_cosigned_message(timestamp, text.encode()))


def generate_signer(name: str, cosignature: bool = False) -> tuple[str, str]:
    """Return a fresh `(signer key, verifier key)` pair of texts."""
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    signer = Signer(name, seed, COSIGNATURE_V1 if cosignature else ED25519)
    return signer.private_key, signer.key


@dataclass(frozen=True)
class Signature:
    """A signature line; `raw` follows the key id; `timestamp` is set on verified cosignatures."""

    name: str
    key_id: int
    raw: bytes
    timestamp: int | None = None

    def line(self) -> str:
        """`— <key name> base64(32-bit key ID || signature)` plus newline."""
        return f"{_DASH}{self.name} {_b64(self.key_id.to_bytes(4, 'big') + self.raw)}\n"


def parse_note(note: str) -> tuple[str, list[Signature]]:
    """Split a signed note into text and (unverified) signatures, checking the syntax only."""
    _check_text(note, "note")
    # "the text is separated from the signatures by the last empty line in the note"
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise NoteError("malformed note: no signature block")
    text, lines = note[: split + 1], note[split + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("malformed note: too many signatures")
    signatures = []
    for line in lines:
        parts = line[len(_DASH) :].split(" ")
        if not line.startswith(_DASH) or len(parts) != 2:
            raise NoteError(f"malformed note: bad signature line {line!r}")
        name, raw = _check_name(parts[0]), _b64decode(parts[1])
        if len(raw) < 5:  # "Signatures are the base64 encoding of 4+n bytes."
            raise NoteError("malformed note: signature too short")
        signatures.append(Signature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
    return text, signatures


def _signature_lines(text: str, signers: Iterable[Signer], timestamp: int | None) -> str:
    return "".join(Signature(s.name, s.key_id, s.sign(text, timestamp)).line() for s in signers)


def sign_note(text: str, *signers: Signer, timestamp: int | None = None) -> str:
    """Sign `text` ("a text ending in newline"); `timestamp` is required for cosigners."""
    _check_text(text, "text")
    if not text.endswith("\n") or not signers:
        raise NoteError("note text must end with a newline and need at least one signer")
    return text + "\n" + _signature_lines(text, signers, timestamp)


def add_signatures(signed_note: str, *signers: Signer, timestamp: int | None = None) -> str:
    """Append signature lines (e.g. witness cosignatures) to a signed note, unchanged."""
    text, _ = parse_note(signed_note)
    return signed_note + _signature_lines(text, signers, timestamp)


def _verifier_map(verifiers: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for v in verifiers:
        other = known.setdefault((v.name, v.key_id), v)
        if (other.public_key, other.sig_type) != (v.public_key, v.sig_type):
            raise NoteError(f"ambiguous key {v.name}+{v.key_id:08x}")
    return known


def _verified(note: str, keys: Iterable[Verifier], strict: bool) -> tuple[str, list[Signature]]:
    """Text and distinct verified signatures, in note order."""
    text, signatures = parse_note(note)
    known, verified = _verifier_map(keys), []
    for sig in signatures:
        # "Verifiers MUST ignore signatures from unknown keys, even if they share a name or ID
        # (but not both) with a known key."
        if (v := known.get((sig.name, sig.key_id))) is None:
            continue
        try:
            checked = Signature(sig.name, sig.key_id, sig.raw, v.verify(text, sig.raw))
        except NoteError:
            if strict:  # "If a signature from a known key fails to verify, ... reject"
                raise
            continue
        if checked not in verified:
            verified.append(checked)
    return text, verified


def open_note(note: str, verifiers: Iterable[Verifier]) -> tuple[str, list[Signature]]:
    """Verify a note; return its text and its distinct verified signatures.

    Raises NoteError if a known key's signature fails: "If no signature from a known key
    verifies successfully, clients MUST reject the note."
    """
    text, verified = _verified(note, verifiers, strict=True)
    if not verified:
        raise NoteError("note has no verifiable signatures")
    return text, verified


def count_valid(note: str, verifiers: Iterable[Verifier]) -> int:
    """Number of distinct verifiers with a valid signature on a well-formed note.

    Lenient on purpose: a bad signature from a known key is not counted but does not
    raise, so one broken witness cannot veto a k-of-n policy. Malformed notes raise.
    """
    _, verified = _verified(note, verifiers, strict=False)
    return len({(sig.name, sig.key_id) for sig in verified})


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint note body: origin, tree size, root hash and extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # "The origin MUST be non-empty"; "Extension lines, if any, MUST be non-empty."
        for line in (self.origin, *self.extensions):
            _check_text(line, "checkpoint line")
            if not line or "\n" in line:
                raise NoteError("checkpoint lines must be non-empty single lines")
        if type(self.size) is not int or not 0 <= self.size < 2**64 or len(self.root) != 32:
            raise NoteError("tree size must fit in 64 bits and the root hash be 32 bytes")

    def body(self) -> str:
        """The note text: origin, decimal size and base64 root, then extension lines."""
        lines = (self.origin, str(self.size), _b64(self.root), *self.extensions)
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Parse and validate a checkpoint note text (signature lines excluded)."""
        # "a sequence of at least three non-empty lines, separated by newlines"
        lines = body[:-1].split("\n")
        if not body.endswith("\n") or len(lines) < 3:
            raise NoteError("malformed checkpoint: needs three newline-terminated lines")
        if not _SIZE.fullmatch(lines[1]):
            raise NoteError(f"malformed checkpoint: bad tree size {lines[1]!r}")
        return cls(lines[0], int(lines[1]), _b64decode(lines[2]), tuple(lines[3:]))
