"""Tests for databourse.ledger.merkle: published vectors, the CT reference tree, and properties."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from databourse.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    ProofError,
    consistency_proof,
    consistency_proof_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    new_nodes_on_append,
    node_hash,
    root,
    root_from_leaves,
    root_nodes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent / "vectors"
Store = dict[tuple[int, int], bytes]


def _get(store: Store) -> Callable[[int, int], bytes]:
    """The simplest ``get_node``: a dict keyed by (level, index)."""
    return lambda level, index: store[(level, index)]


# --- transparency-dev/merkle testdata (see vectors/SOURCE.md) -------------------------------


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(json.loads(f.read_text()), id=f"{f.relative_to(VECTORS)}") for f in files]


INCLUSION_CASES = _cases("inclusion")
CONSISTENCY_CASES = _cases("consistency")


def _inclusion_args(case: dict[str, Any]) -> tuple[bytes, int, int, list[bytes], bytes]:
    index = case["leafIdx"] if "leafIdx" in case else case["leafIndex"]  # older generator name
    proof = [_b64(p) for p in case["proof"] or []]  # Go writes an empty proof as null
    return _b64(case["leafHash"]), index, case["treeSize"], proof, _b64(case["root"])


def _consistency_args(case: dict[str, Any]) -> tuple[int, int, bytes, bytes, list[bytes]]:
    proof = [_b64(p) for p in case["proof"] or []]
    return case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), proof


def test_vector_corpus_is_complete() -> None:
    assert len(INCLUSION_CASES) == 80
    assert len(CONSISTENCY_CASES) == 77


@pytest.mark.parametrize("case", INCLUSION_CASES)
def test_inclusion_vector(case: dict[str, Any]) -> None:
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*_inclusion_args(case))
    else:
        verify_inclusion(*_inclusion_args(case))


@pytest.mark.parametrize("case", CONSISTENCY_CASES)
def test_consistency_vector(case: dict[str, Any]) -> None:
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*_consistency_args(case))
    else:
        verify_consistency(*_consistency_args(case))


# --- the RFC 6962 reference tree (transparency-dev/merkle testonly/constants.go) -------------

REF_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]
REF_INPUTS += ["606162636465666768696a6b6c6d6e6f"]
REF_LEAVES = [leaf_hash(bytes.fromhex(x)) for x in REF_INPUTS]
REF_ROOTS = [  # RootHashes(): MTH of the first n inputs, n = 0..8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
REF_NODES = {  # NodeHashes(): every perfect node (level, index) of the 8-leaf tree
    (0, 0): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 2): "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    (0, 3): "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    (0, 4): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (0, 5): "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    (0, 6): "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 0): "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def test_reference_tree_roots_and_nodes() -> None:
    store: Store = {}
    frontier = Frontier()
    assert root(0, _get(store)) == frontier.root() == EMPTY_ROOT == bytes.fromhex(REF_ROOTS[0])
    for n, leaf in enumerate(REF_LEAVES, start=1):
        created = new_nodes_on_append(n - 1, leaf, _get(store))
        assert frontier.append(leaf) == created
        store.update({(lvl, idx): h for lvl, idx, h in created})
        want = bytes.fromhex(REF_ROOTS[n])
        assert root(n, _get(store)) == frontier.root() == root_from_leaves(REF_LEAVES[:n])
        assert root_from_leaves(REF_LEAVES[:n]) == want
    assert {k: v.hex() for k, v in store.items()} == REF_NODES


def test_generated_proofs_equal_the_published_happy_paths() -> None:
    """Our proof *generation* must reproduce transparency-dev's proofs byte for byte."""
    get = _get({k: bytes.fromhex(v) for k, v in REF_NODES.items()})
    compared = 0
    for param in INCLUSION_CASES:
        _, index, size, proof, head = _inclusion_args(param.values[0])
        if not param.values[0]["wantErr"] and head == bytes.fromhex(REF_ROOTS[size]):
            assert inclusion_proof(index, size, get) == proof
            compared += 1
    for param in CONSISTENCY_CASES:
        old, new, _, new_root, proof = _consistency_args(param.values[0])
        if not param.values[0]["wantErr"] and new_root == bytes.fromhex(REF_ROOTS[new]):
            assert consistency_proof(old, new, get) == proof
            compared += 1
    assert compared == 8


# --- properties over trees of up to a few hundred leaves --------------------------------------

MAX = 300
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX)]
STORE: Store = {}
for _i, _leaf in enumerate(LEAVES):
    STORE.update({(lvl, idx): h for lvl, idx, h in new_nodes_on_append(_i, _leaf, _get(STORE))})


def _reader(size: int, seen: list[tuple[int, int]] | None = None) -> Callable[[int, int], bytes]:
    """A node reader for a tree of ``size`` leaves that refuses nodes not yet complete."""

    def get(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"node ({level}, {index}) is absent at size {size}"
        if seen is not None:
            seen.append((level, index))
        return STORE[(level, index)]

    return get


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def _ref_path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) written straight from RFC 9162 §2.1.3.1 over a list of leaf hashes."""
    if len(d) == 1:
        return []
    k = _split(len(d))
    if m < k:
        return [*_ref_path(m, d[:k]), root_from_leaves(d[k:])]
    return [*_ref_path(m - k, d[k:]), root_from_leaves(d[:k])]


def _ref_subproof(m: int, d: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) written straight from RFC 9162 §2.1.4.1."""
    if m == len(d):
        return [] if whole else [root_from_leaves(d)]
    k = _split(len(d))
    if m <= k:
        return [*_ref_subproof(m, d[:k], whole), root_from_leaves(d[k:])]
    return [*_ref_subproof(m - k, d[k:], False), root_from_leaves(d[:k])]


def _flip(h: bytes, at: int) -> bytes:
    return h[:at] + bytes([h[at] ^ 0x01]) + h[at + 1 :]


def test_incremental_appends_match_the_reference_for_every_prefix() -> None:
    store: Store = {}
    frontier = Frontier()
    for n in range(1, 130):
        created = new_nodes_on_append(n - 1, LEAVES[n - 1], _get(store))
        assert created[0][:2] == (0, n - 1)
        assert frontier.append(LEAVES[n - 1]) == created
        store.update({(lvl, idx): h for lvl, idx, h in created})
        want = root_from_leaves(LEAVES[:n])
        assert frontier.root() == root(n, _get(store)) == want
        assert Frontier.from_nodes(n, _get(store)).root() == want
        assert set(store) == {(lvl, i) for lvl in range(9) for i in range(n >> lvl)}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, MAX), st.integers(0, MAX - 1))
def test_frontier_resumed_from_storage_keeps_appending(start: int, more: int) -> None:
    frontier = Frontier.from_nodes(start, _reader(start))
    assert frontier.size == start
    for n in range(start, min(MAX, start + more)):
        assert frontier.append(LEAVES[n]) == new_nodes_on_append(n, LEAVES[n], _reader(n))
    assert frontier.root() == root_from_leaves(LEAVES[: frontier.size])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, MAX), st.data())
def test_inclusion_proofs_verify_and_read_only_listed_nodes(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    seen: list[tuple[int, int]] = []
    proof = inclusion_proof(index, size, _reader(size, seen))
    assert seen == inclusion_proof_nodes(index, size)
    assert proof == _ref_path(index, LEAVES[:size])
    head = root(size, _reader(size))
    assert head == root_from_leaves(LEAVES[:size])
    verify_inclusion(LEAVES[index], index, size, proof, head)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, MAX), st.data())
def test_mutated_inclusion_proofs_fail(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    proof = inclusion_proof(index, size, _reader(size))
    head, leaf = root_from_leaves(LEAVES[:size]), LEAVES[index]
    junk = data.draw(st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE))
    bad: list[tuple[bytes, int, int, list[bytes], bytes]] = [
        (leaf, index, size, [*proof, junk], head),
        (leaf, index, size, [junk, *proof], head),
        (_flip(leaf, data.draw(st.integers(0, HASH_SIZE - 1))), index, size, proof, head),
        (leaf, index, size, proof, _flip(head, data.draw(st.integers(0, HASH_SIZE - 1)))),
        (leaf, index + size, size, proof, head),
    ]
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1))
        flipped = [*proof[:at], _flip(proof[at], data.draw(st.integers(0, 31))), *proof[at + 1 :]]
        bad += [(leaf, index, size, flipped, head), (leaf, index, size, proof[:-1], head)]
        bad.append((leaf, index, size, proof[1:], head))
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        bad.append((leaf, other, size, proof, head))
    # A different size is only a different claim together with that size's root: sizes are
    # bound to roots by the signed checkpoint, not by the proof (see test below).
    wrong_size = data.draw(st.integers(index + 1, MAX))
    if wrong_size != size:
        bad.append((leaf, index, wrong_size, proof, root_from_leaves(LEAVES[:wrong_size])))
    for args in bad:
        with pytest.raises(ProofError):
            verify_inclusion(*args)


def test_a_proof_does_not_bind_the_size_on_its_own() -> None:
    """Documented RFC behaviour: PATH(0, D[3]) also verifies as "size 4" against MTH(D[3])."""
    proof = inclusion_proof(0, 3, _reader(3))
    verify_inclusion(LEAVES[0], 0, 4, proof, root_from_leaves(LEAVES[:3]))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, MAX), st.data())
def test_consistency_proofs_verify_and_read_only_listed_nodes(
    new: int, data: st.DataObject
) -> None:
    old = data.draw(st.integers(1, new))
    seen: list[tuple[int, int]] = []
    proof = consistency_proof(old, new, _reader(new, seen))
    assert seen == consistency_proof_nodes(old, new)
    assert proof == _ref_subproof(old, LEAVES[:new], True)
    verify_consistency(old, new, root(old, _reader(old)), root(new, _reader(new)), proof)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, MAX), st.data())
def test_mutated_consistency_proofs_fail(new: int, data: st.DataObject) -> None:
    old = data.draw(st.integers(1, new - 1))
    proof = consistency_proof(old, new, _reader(new))
    r1, r2 = root_from_leaves(LEAVES[:old]), root_from_leaves(LEAVES[:new])
    junk = data.draw(st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE))
    at = data.draw(st.integers(0, len(proof) - 1))
    flipped = [*proof[:at], _flip(proof[at], data.draw(st.integers(0, 31))), *proof[at + 1 :]]
    bad: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (old, new, r1, r2, flipped),
        (old, new, r1, r2, proof[:-1]),
        (old, new, r1, r2, proof[1:]),
        (old, new, r1, r2, [*proof, junk]),
        (old, new, r1, r2, [junk, *proof]),
        (old, new, _flip(r1, data.draw(st.integers(0, 31))), r2, proof),
        (old, new, r1, _flip(r2, data.draw(st.integers(0, 31))), proof),
        (old, new, r2, r1, proof),
        (new, old, r2, r1, proof),
        (0, new, EMPTY_ROOT, r2, proof),
    ]
    wrong_old = data.draw(st.integers(1, MAX))
    if wrong_old != old:
        bad.append((wrong_old, new, root_from_leaves(LEAVES[:wrong_old]), r2, proof))
    wrong_new = data.draw(st.integers(1, MAX))
    if wrong_new != new:
        bad.append((old, wrong_new, r1, root_from_leaves(LEAVES[:wrong_new]), proof))
    for args in bad:
        with pytest.raises(ProofError):
            verify_consistency(*args)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, MAX))
def test_node_listings_name_only_existing_perfect_nodes(size: int) -> None:
    seen: list[tuple[int, int]] = []
    root(size, _reader(size, seen))
    assert seen == root_nodes(size)
    assert sum(1 << lvl for lvl, _ in root_nodes(size)) == size
    listed = list(root_nodes(size))
    for index in range(0, size, max(1, size // 7)):
        listed += inclusion_proof_nodes(index, size)
    for old in range(1, size + 1, max(1, size // 7)):
        listed += consistency_proof_nodes(old, size)
    assert all(lvl >= 0 and idx >= 0 and (idx + 1) << lvl <= size for lvl, idx in listed)


# --- edges and error messages -----------------------------------------------------------------


def test_hash_primitives() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"") == bytes.fromhex(REF_NODES[(0, 0)])
    assert (
        node_hash(LEAVES[0], LEAVES[1]) == hashlib.sha256(b"\x01" + LEAVES[0] + LEAVES[1]).digest()
    )
    assert root_from_leaves([]) == EMPTY_ROOT
    assert issubclass(ProofError, ValueError)


def test_generation_rejects_impossible_requests() -> None:
    get = _reader(8)
    for call in (
        lambda: inclusion_proof(0, 0, get),
        lambda: inclusion_proof(8, 8, get),
        lambda: inclusion_proof_nodes(-1, 8),
        lambda: consistency_proof(0, 8, get),
        lambda: consistency_proof(5, 4, get),
        lambda: consistency_proof_nodes(0, 0),
        lambda: root_nodes(-1),
        lambda: new_nodes_on_append(0, b"short", get),
        lambda: root(2, lambda lvl, idx: b"not a hash"),
    ):
        with pytest.raises(ValueError):
            call()
    assert consistency_proof(8, 8, get) == consistency_proof_nodes(8, 8) == []


def test_equal_sizes_need_an_empty_proof_and_equal_roots() -> None:
    r = root_from_leaves(LEAVES[:5])
    verify_consistency(5, 5, r, r, [])
    with pytest.raises(ProofError, match="roots differ"):
        verify_consistency(5, 5, r, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="sizes are equal, but the proof has 1"):
        verify_consistency(5, 5, r, r, [r])
    with pytest.raises(ProofError, match="empty tree"):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="cannot go from size 6 to size 5"):
        verify_consistency(6, 5, r, r, [])


def test_error_messages_say_why() -> None:
    head, proof = root_from_leaves(LEAVES[:5]), inclusion_proof(1, 5, _reader(5))
    cases: list[tuple[Callable[[], None], str]] = [
        (lambda: verify_inclusion(LEAVES[1], 5, 5, proof, head), "outside a tree of size 5"),
        (
            lambda: verify_inclusion(b"x", 1, 5, proof, head),
            "leaf hash must be a 32-byte hash, got 1 bytes",
        ),
        (lambda: verify_inclusion(LEAVES[1], 1, 5, proof[:2], head), "has 2 hashes, want 3"),
        (lambda: verify_inclusion(LEAVES[1], 1, 5, [*proof[:2], b""], head), r"proof\[2\]"),
        (lambda: verify_inclusion(LEAVES[1], 1, 5, proof, EMPTY_ROOT), "different root"),
        (lambda: verify_consistency(2, 5, head, head, []), "has 0 hashes, want 2"),
    ]
    for call, message in cases:
        with pytest.raises(ProofError, match=message):
            call()
