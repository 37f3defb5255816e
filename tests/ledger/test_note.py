"""Tests for databourse.ledger.note: published vectors first, then properties and failures."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from databourse.ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    NoteError,
    Signature,
    Signer,
    Verifier,
    add_signatures,
    count_valid,
    generate_signer,
    open_note,
    parse_note,
    sign_note,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "note" / "vectors.json").read_text(encoding="utf-8")
)
GO = VECTORS["go_sumdb_note"]
SIGSUM = VECTORS["sigsum_checkpoint"]
ROOT = bytes(range(32))

# Printable text for notes: no control characters (category Cc) and no surrogates (Cs).
LINE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


def peter() -> tuple[Signer, Verifier]:
    return Signer.from_key(GO["signer_key"]), Verifier.from_key(GO["verifier_key"])


def sigsum_seed() -> bytes:
    return bytes.fromhex(SIGSUM["seed_hex"])


# --- Published vectors -------------------------------------------------------------------


def test_go_vector_key_ids_and_key_texts() -> None:
    signer, verifier = peter()
    assert signer.name == verifier.name == "PeterNeumann"
    assert signer.key_id == verifier.key_id == 0xC74F20A3
    assert signer.sig_type == verifier.sig_type == ED25519
    assert signer.key == verifier.key == GO["verifier_key"]
    assert signer.private_key == GO["signer_key"]
    assert Verifier.from_key(GO["other_verifier_key"]).key_id == 0xAF0CFE78


def test_go_vector_signing_is_byte_exact() -> None:
    signer, _ = peter()
    assert sign_note(GO["text"], signer) == GO["text"] + "\n" + GO["signature_line"]


def test_go_vector_opens() -> None:
    _, verifier = peter()
    text, sigs = open_note(GO["text"] + "\n" + GO["signature_line"], [verifier])
    assert text == GO["text"]
    assert [(s.name, s.key_id, s.timestamp, len(s.raw)) for s in sigs] == [
        ("PeterNeumann", 0xC74F20A3, None, 64)
    ]
    assert sigs[0].line() == GO["signature_line"]


def test_go_vector_unknown_key_is_ignored_and_both_verify_when_known() -> None:
    _, verifier = peter()
    enoch = Verifier.from_key(GO["other_verifier_key"])
    note = GO["text"] + "\n" + GO["signature_line"] + GO["other_signature_line"]
    assert [s.name for s in open_note(note, [verifier])[1]] == ["PeterNeumann"]
    assert [s.name for s in open_note(note, [verifier, enoch])[1]] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(note, [])


def test_go_vector_corrupted_signature_is_rejected() -> None:
    _, verifier = peter()
    line = GO["signature_line"]
    bad = GO["text"] + "\n" + line[:60] + "ABCD" + line[60:]
    with pytest.raises(NoteError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(bad, [verifier])


@pytest.mark.parametrize("field", ["verifier_key", "signer_key"])
def test_go_vector_every_mangled_key_is_rejected(field: str) -> None:
    key = GO[field]
    parse = Verifier.from_key if field == "verifier_key" else Signer.from_key
    mangled = {key[i:j] for i in range(len(key)) for j in range(i + 1, len(key) + 1)}
    mangled |= {key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :] for i in range(len(key))}
    mangled.discard(key)
    for text in sorted(mangled):
        with pytest.raises(NoteError):
            parse(text)


def test_real_sum_golang_org_checkpoint() -> None:
    vector = VECTORS["sum_golang_org_checkpoint"]
    verifier = Verifier.from_key(vector["verifier_key"])
    assert verifier.key_id == 0x033DE0AE
    text, sigs = open_note(vector["note"], [verifier])
    checkpoint = Checkpoint.parse(text)
    assert (checkpoint.origin, checkpoint.size) == ("go.sum database tree", 30055305)
    assert checkpoint.body() == text
    assert [s.name for s in sigs] == ["sum.golang.org"]


def test_sigsum_log_checkpoint_is_reproduced() -> None:
    note = SIGSUM["log_note"]
    body = note[: note.index("\n\n") + 1]
    log = Signer(Checkpoint.parse(body).origin, sigsum_seed())
    assert sign_note(body, log) == note
    assert open_note(note, [log.verifier()])[0] == body


def test_sigsum_witness_cosignature_is_reproduced() -> None:
    witness = Signer(SIGSUM["witness_name"], sigsum_seed(), COSIGNATURE_V1)
    assert witness.key_id == int(SIGSUM["witness_key_id"], 16)
    note = SIGSUM["cosigned_body"] + "\n" + SIGSUM["placeholder_log_line"]
    cosigned = add_signatures(note, witness, timestamp=SIGSUM["timestamp"])
    valid_line = SIGSUM["cosignature_lines"][SIGSUM["valid_cosignature_index"]]
    assert cosigned == note + valid_line
    text, sigs = open_note(cosigned, [witness.verifier()])
    assert text == SIGSUM["cosigned_body"]
    assert [(s.name, s.timestamp, len(s.raw)) for s in sigs] == [("example.org/witness", 1234, 72)]


def test_sigsum_cosignature_lines_strict_and_lenient() -> None:
    """Wrong id and other name are ignored; a known key with a bad length is an error for
    open_note but only goes uncounted in count_valid."""
    witness = Verifier(SIGSUM["witness_name"], Signer(".", sigsum_seed()).public_key, 0x04)
    lines = SIGSUM["cosignature_lines"]
    note = SIGSUM["cosigned_body"] + "\n" + "".join(lines)
    assert count_valid(note, [witness]) == 1
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note, [witness])
    assert len(open_note(SIGSUM["cosigned_body"] + "\n" + "".join(lines[:3]), [witness])[1]) == 1


def test_transparency_dev_key_ids() -> None:
    keys = VECTORS["transparency_dev_keys"]
    remora = Verifier.from_key(keys["cosignature_verifier_key"])
    assert (remora.sig_type, remora.key_id) == (COSIGNATURE_V1, 0xDA77ADE7)
    plain = Verifier.from_key(keys["ed25519_verifier_key"])
    assert (plain.sig_type, plain.key_id) == (ED25519, 0x7997405C)
    converted = Verifier.from_key(keys["ed25519_verifier_key"], cosignature=True)
    assert converted.sig_type == COSIGNATURE_V1 and converted.key_id != plain.key_id
    assert Verifier.from_key(converted.key).key_id == converted.key_id


def test_c2sp_examples_parse() -> None:
    examples = VECTORS["c2sp_examples"]
    text, sigs = parse_note(examples["note"])
    assert text.endswith("\n\ned è subito sera.\n")
    assert [s.name for s in sigs] == ["quasimodo.example/salvatore"]
    body, sigs = parse_note(examples["cosigned_checkpoint"])
    checkpoint = Checkpoint.parse(body)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    witness = sigs[1]
    assert witness.key_id == int(examples["cosignature_key_id"], 16)
    timestamp = int.from_bytes(witness.raw[:8], "big")
    assert (timestamp, len(witness.raw)) == (examples["cosignature_timestamp"], 72)


# --- Round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("cosignature", [False, True])
def test_generated_keys_round_trip(cosignature: bool) -> None:
    skey, vkey = generate_signer("databourse.example/log", cosignature=cosignature)
    signer, verifier = Signer.from_key(skey), Verifier.from_key(vkey)
    assert (signer.key_id, signer.private_key, signer.key) == (verifier.key_id, skey, vkey)
    assert signer.sig_type == (COSIGNATURE_V1 if cosignature else ED25519)
    timestamp = 1_700_000_000 if cosignature else None
    note = sign_note("hello\n", signer, timestamp=timestamp)
    assert open_note(note, [verifier])[1][0].timestamp == timestamp


def test_signer_key_converted_to_cosigner_matches_converted_verifier() -> None:
    skey, vkey = generate_signer("witness.example/w1")
    cosigner = Signer.from_key(skey, cosignature=True)
    verifier = Verifier.from_key(vkey, cosignature=True)
    assert cosigner.key_id == verifier.key_id != Verifier.from_key(vkey).key_id
    note = sign_note(Checkpoint("log", 1, ROOT).body(), cosigner, timestamp=5)
    assert count_valid(note, [verifier]) == 1
    with pytest.raises(NoteError, match="no verifiable"):  # 0x01 key id differs: unknown
        open_note(note, [Verifier.from_key(vkey)])


def test_witnesses_add_cosignatures_without_altering_the_note() -> None:
    log = Signer("example.com/log", bytes(32))
    witnesses = [Signer(f"w{i}.example", bytes([i]) * 32, COSIGNATURE_V1) for i in (1, 2, 3)]
    note = sign_note(Checkpoint("example.com/log", 7, ROOT, ("ext",)).body(), log)
    cosigned = add_signatures(note, witnesses[0], timestamp=10)
    cosigned = add_signatures(cosigned, witnesses[2], timestamp=11)
    assert cosigned.startswith(note)
    assert count_valid(cosigned, [w.verifier() for w in witnesses]) == 2
    assert count_valid(cosigned, [log.verifier()]) == 1
    _, sigs = open_note(cosigned, [log, *witnesses])
    assert [s.timestamp for s in sigs] == [None, 10, 11]


def test_duplicate_signatures_are_counted_once() -> None:
    signer, verifier = peter()
    note = GO["text"] + "\n" + GO["signature_line"] * 3
    assert count_valid(note, [verifier]) == 1
    assert len(open_note(note, [verifier, verifier])[1]) == 1
    cosigner = Signer("w", bytes(32), COSIGNATURE_V1)
    twice = add_signatures(sign_note("t\n", signer), cosigner, cosigner, timestamp=1)
    again = add_signatures(twice, cosigner, timestamp=2)
    assert count_valid(again, [cosigner]) == 1
    assert [s.timestamp for s in open_note(again, [cosigner])[1]] == [1, 2]


@given(text=st.lists(LINE | st.just(""), max_size=5), extra=st.booleans())
def test_sign_open_round_trip(text: list[str], extra: bool) -> None:
    signer, verifier = peter()
    body = "".join(line + "\n" for line in text) or "\n"
    note = sign_note(body, signer)
    if extra:
        note = add_signatures(note, Signer("other", bytes(32)))
    assert open_note(note, [verifier])[0] == body


@given(
    origin=LINE,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(LINE, max_size=3).map(tuple),
)
def test_checkpoint_round_trip(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    checkpoint = Checkpoint(origin, size, root, extensions)
    body = checkpoint.body()
    assert Checkpoint.parse(body) == checkpoint
    assert Checkpoint.parse(body).body() == body


# --- Failures ------------------------------------------------------------------------------


def test_tampered_text_is_rejected() -> None:
    signer, verifier = peter()
    note = sign_note("size 10\n", signer).replace("size 10", "size 11")
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note, [verifier])
    assert count_valid(note, [verifier]) == 0


def test_tampered_signature_is_rejected() -> None:
    signer, verifier = peter()
    note = sign_note("hello\n", signer)
    sig = note.split("\n")[2].split(" ")[2]
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    tampered = note.replace(sig, base64.b64encode(raw).decode())
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(tampered, [verifier])


def test_wrong_key_with_same_name_is_unknown() -> None:
    signer, _ = peter()
    impostor = Signer("PeterNeumann", bytes(32))
    note = sign_note("hello\n", impostor)
    with pytest.raises(NoteError, match="no verifiable signatures"):
        open_note(note, [signer.verifier()])
    assert count_valid(note, [signer.verifier()]) == 0


def test_ambiguous_verifiers_are_rejected() -> None:
    a, b = Verifier("same", bytes(32)), Verifier("same", bytes(31) + b"\x01")
    b.key_id = a.key_id  # simulate a key id collision
    with pytest.raises(NoteError, match="ambiguous key"):
        open_note(GO["text"] + "\n" + GO["signature_line"], [a, b])


@pytest.mark.parametrize(
    "suffix",
    [
        "",  # no blank line and no signatures
        "\n",  # blank line but no signatures
        "\n" + GO["signature_line"][:-1],  # missing final newline
        "\n" + GO["signature_line"].replace("PeterNeumann", "Bad Name"),
        "\n" + GO["signature_line"].replace("PeterNeumann", "Peter+Neumann"),
        "\n" + GO["signature_line"].replace("\u2014", "-"),
        "\n" + GO["signature_line"].replace(" x08go", "  x08go"),
        "\n" + GO["signature_line"].replace("x08go", "x08go!"),
        "\n" + GO["signature_line"].replace("x08go/", "x08go").replace("AM=", "AM"),
        "\n" + GO["signature_line"].replace("AM=", "AN="),  # non-canonical base64
        "\n\u2014 PeterNeumann AAAA\n",  # shorter than a key id plus one byte
        "\n" + GO["signature_line"] + "Unexpected line.\n",
        "\n" + GO["signature_line"] * 101,
    ],
)
def test_malformed_notes(suffix: str) -> None:
    _, verifier = peter()
    with pytest.raises(NoteError):
        open_note(GO["text"] + suffix, [verifier])
    with pytest.raises(NoteError):
        count_valid(GO["text"] + suffix, [verifier])


@pytest.mark.parametrize("bad", ["\x01", "\r", "\udcff"])
def test_control_characters_and_invalid_utf8_are_rejected(bad: str) -> None:
    signer, verifier = peter()
    with pytest.raises(NoteError):
        open_note(bad + GO["text"] + "\n" + GO["signature_line"], [verifier])
    with pytest.raises(NoteError):
        sign_note("a" + bad + "\n", signer)


@pytest.mark.parametrize("text", ["", "no final newline", "two\nlines"])
def test_sign_note_requires_text_ending_in_newline(text: str) -> None:
    signer, _ = peter()
    with pytest.raises(NoteError):
        sign_note(text, signer)


def test_sign_note_requires_a_signer() -> None:
    with pytest.raises(NoteError):
        sign_note("text\n")


@pytest.mark.parametrize("timestamp", [None, -1, 2**63])
def test_cosignature_needs_a_valid_timestamp(timestamp: int | None) -> None:
    with pytest.raises(NoteError, match="timestamp"):
        sign_note("t\n", Signer("w", bytes(32), COSIGNATURE_V1), timestamp=timestamp)


def test_cosignature_timestamp_above_two_to_the_63_is_rejected() -> None:
    cosigner = Signer("w", bytes(32), COSIGNATURE_V1)
    note = sign_note("t\n", cosigner, timestamp=2**63 - 1)
    assert open_note(note, [cosigner])[1][0].timestamp == 2**63 - 1
    # A correctly signed message whose timestamp breaks "It MUST NOT exceed 2^63 - 1".
    message = b"cosignature/v1\ntime %d\nt\n" % 2**63
    raw = (2**63).to_bytes(8, "big") + Ed25519PrivateKey.from_private_bytes(bytes(32)).sign(message)
    line = Signature("w", cosigner.key_id, raw).line()
    with pytest.raises(NoteError, match="invalid signature"):
        open_note("t\n\n" + line, [cosigner])


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\tb", "a\u3000b", "a\nb"])
def test_invalid_key_names(name: str) -> None:
    with pytest.raises(NoteError, match="invalid key name"):
        generate_signer(name)


@pytest.mark.parametrize(
    "key",
    [
        "PeterNeumann+c74f20a3",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    ],
)
def test_bad_verifier_keys(key: str) -> None:
    with pytest.raises(NoteError):
        Verifier.from_key(key)


@pytest.mark.parametrize(
    "body",
    [
        "log\n10\n" + base64.b64encode(ROOT).decode(),  # missing final newline
        "log\n10\n",  # only two lines
        "\n10\n" + base64.b64encode(ROOT).decode() + "\n",  # empty origin
        "log\n10\n" + base64.b64encode(ROOT).decode() + "\n\n",  # empty extension line
        "log\n10\n" + base64.b64encode(ROOT[:31]).decode() + "\n",  # 31-byte root
        "log\n10\n" + base64.b64encode(ROOT + b"x").decode() + "\n",  # 33-byte root
        "log\n10\n" + base64.b64encode(ROOT).decode().rstrip("=") + "\n",  # no padding
        "log\n10\nnot base64!\n",
        "log\n10\n" + base64.b64encode(ROOT).decode()[:-2] + "9=\n",  # non-canonical padding bits
        *(
            f"log\n{size}\n" + base64.b64encode(ROOT).decode() + "\n"
            for size in ["", "01", "00", "-1", "+1", " 1", "1 ", "1.0", "0x1", "\u0661", "1_0"]
        ),
        "log\n18446744073709551616\n" + base64.b64encode(ROOT).decode() + "\n",  # 2**64
        "lo\x01g\n10\n" + base64.b64encode(ROOT).decode() + "\n",
    ],
)
def test_checkpoint_parse_rejects(body: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(body)


@pytest.mark.parametrize(
    "args",
    [("", 1, ROOT), ("a\nb", 1, ROOT), ("log", -1, ROOT), ("log", True, ROOT), ("log", 1, b"")],
)
def test_checkpoint_constructor_rejects(args: tuple[Any, ...]) -> None:
    with pytest.raises(NoteError):
        Checkpoint(*args)


def test_checkpoint_body_format() -> None:
    checkpoint = Checkpoint("example.com/log", 0, bytes(32), ("a", "b"))
    assert checkpoint.body() == (
        "example.com/log\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\na\nb\n"
    )


def test_signer_key_errors_do_not_echo_the_secret() -> None:
    secret = GO["signer_key"].rsplit("+", 1)[1]
    for text in (GO["signer_key"] + "!", GO["signer_key"].replace("AYEK", "AYEL")):
        with pytest.raises(NoteError) as error:
            Signer.from_key(text)
        assert secret[4:20] not in str(error.value)
