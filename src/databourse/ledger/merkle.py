"""Merkle tree mathematics of RFC 9162 (Certificate Transparency v2), section 2.1.

Pure: hashes in, hashes out. The ledger stores only *perfect* nodes: node (level, index) is the
root of the complete subtree over leaves [index·2^level, (index+1)·2^level), and level 0 holds the
leaf hashes. Roots and proofs of a tree of any size are built from those nodes, combining the
O(log n) right-edge subtrees on the fly. Every function that reads nodes takes a
``get_node(level, index) -> hash`` callable, and each has a ``*_nodes`` companion listing the
coordinates it will read, so a caller can fetch them all in one query first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import reduce

GetNode = Callable[[int, int], bytes]
Node = tuple[int, int]

HASH_SIZE = 32  # SHA-256, the hash algorithm of RFC 9162 §2.1 as used by this ledger
EMPTY_ROOT = hashlib.sha256(b"").digest()  # §2.1.1: "MTH({}) = HASH()"


class ProofError(ValueError):
    """A proof does not verify, or its inputs cannot describe a valid proof."""


def leaf_hash(entry: bytes) -> bytes:
    """§2.1.1: "MTH({d(0)}) = HASH(0x00 || d(0))" (the 0x00 prefix separates leaves from nodes)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """§2.1.1: "MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))"."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """§2.1.1: "k is the largest power of two smaller than n (i.e., k < n <= 2k)", for n > 1."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_nodes(begin: int, end: int) -> list[Node]:
    """Perfect nodes whose right fold is MTH(D[begin:end]), leftmost first. In every subtree the
    §2.1 recursion yields, ``begin`` is aligned, so each set bit of the size is one perfect node."""
    nodes: list[Node] = []
    size = end - begin
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, begin >> level))
            begin += 1 << level
    return nodes


def _fold(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its perfect nodes: the §2.1.1 split always puts the largest left."""
    if not hashes:
        return EMPTY_ROOT  # §2.1.1: "MTH({}) = HASH()"
    return reduce(lambda right, left: node_hash(left, right), reversed(hashes[:-1]), hashes[-1])


def _check_hash(value: bytes, what: str, error: type[ValueError] = ValueError) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise error(f"{what} must be a {HASH_SIZE}-byte hash, got {got}")


def _fetch(get_node: GetNode, level: int, index: int) -> bytes:
    """Read a stored node, refusing anything that is not a hash (a corrupt or missing row)."""
    value = get_node(level, index)
    _check_hash(value, f"node ({level}, {index})")
    return value


def _range_hash(begin: int, end: int, get_node: GetNode) -> bytes:
    return _fold([_fetch(get_node, lvl, idx) for lvl, idx in _perfect_nodes(begin, end)])


def _check_proof(kind: str, proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError(f"{kind} proof has {len(proof)} hashes, want {want}")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof[{i}]", ProofError)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PATH(index, D[size]) (§2.1.3.1), leaf-side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:  # "PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])" for m < k
            ranges.append((begin + k, end))
            end = begin + k
        else:  # "PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])" for m >= k
            ranges.append((begin, begin + k))
            begin += k
    return ranges[::-1]


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTHs form PROOF(old_size, D[new_size]) (§2.1.4.1), deepest first."""
    if not 0 < old_size <= new_size:  # §2.1.4: defined for "0 < m < n"; m = n gives []
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    ranges: list[tuple[int, int]] = []
    begin, end, whole = 0, new_size, True  # "PROOF(m, D[n]) = SUBPROOF(m, D[n], true)"
    while old_size < end:
        k = _split(end - begin)
        if old_size - begin <= k:  # "SUBPROOF(m, D[0:k], b) : MTH(D[k:n])" for m <= k
            ranges.append((begin + k, end))
            end = begin + k
        else:  # "SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])" for m > k
            ranges.append((begin, begin + k))
            begin, whole = begin + k, False
    if not whole:  # "SUBPROOF(m, D[m], false) = {MTH(D[m])}"; with b = true it is empty
        ranges.append((begin, end))
    return ranges[::-1]


def root_nodes(size: int) -> list[Node]:
    """Nodes whose right fold is the tree head of ``size`` leaves (also the append frontier)."""
    if size < 0:
        raise ValueError(f"tree size {size} is negative")
    return _perfect_nodes(0, size)


def root(size: int, get_node: GetNode) -> bytes:
    """MTH(D[size]) (§2.1.1) from stored perfect nodes."""
    return _fold([_fetch(get_node, lvl, idx) for lvl, idx in root_nodes(size)])


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    """Reference MTH (§2.1.1) over leaf *hashes*, written straight from the recursive definition."""

    def mth(begin: int, end: int) -> bytes:
        if end - begin == 1:
            return leaves[begin]
        k = _split(end - begin)
        return node_hash(mth(begin, begin + k), mth(begin + k, end))

    return mth(0, len(leaves)) if leaves else EMPTY_ROOT


def new_nodes_on_append(size: int, leaf: bytes, get_node: GetNode) -> list[tuple[int, int, bytes]]:
    """Nodes to store when ``leaf`` is appended at index ``size``: the leaf, then each parent
    that becomes perfect. Only left siblings from ``root_nodes(size)`` are read."""
    _check_hash(leaf, "leaf")
    if size < 0:
        raise ValueError(f"tree size {size} is negative")
    created = [(0, size, leaf)]
    level, index, acc = 0, size, leaf
    while index & 1:  # a right child completes its parent
        acc = node_hash(_fetch(get_node, level, index - 1), acc)
        level, index = level + 1, index >> 1
        created.append((level, index, acc))
    return created


def inclusion_proof_nodes(index: int, size: int) -> list[Node]:
    """Every node ``inclusion_proof(index, size, ...)`` reads."""
    return [n for b, e in _inclusion_ranges(index, size) for n in _perfect_nodes(b, e)]


def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """Audit path PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf-side hash first."""
    return [_range_hash(b, e, get_node) for b, e in _inclusion_ranges(index, size)]


def consistency_proof_nodes(old_size: int, new_size: int) -> list[Node]:
    """Every node ``consistency_proof(old_size, new_size, ...)`` reads."""
    ranges = _consistency_ranges(old_size, new_size)
    return [n for b, e in ranges for n in _perfect_nodes(b, e)]


def consistency_proof(old_size: int, new_size: int, get_node: GetNode) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1; empty when the sizes are equal."""
    return [_range_hash(b, e, get_node) for b, e in _consistency_ranges(old_size, new_size)]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: raise ProofError unless ``proof`` places ``leaf`` at ``index``."""
    if not 0 <= index < size:  # step 1: "If leaf_index >= tree_size, then fail"
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash", ProofError)
    _check_hash(root, "root", ProofError)
    _check_proof("inclusion", proof, len(_inclusion_ranges(index, size)))
    fn, sn, r = index, size - 1, leaf  # steps 2-3
    for p in proof:  # step 4
        if sn == 0:  # 4a
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # 4b
            r = node_hash(p, r)
            while fn and not fn & 1:  # 4b-ii: skip levels where we have no right sibling
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1  # 4c
    if sn != 0:  # step 5
        raise ProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofError("inclusion proof leads to a different root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise ProofError unless ``proof`` shows ``old_root`` is a prefix."""
    if not 0 <= old_size <= new_size:  # a log only grows
        raise ProofError(f"a log cannot go from size {old_size} to size {new_size}")
    if old_size == 0:  # §2.1.4 defines proofs for 0 < m only; transparency-dev rejects size 0
        raise ProofError("consistency with the empty tree is not provable")
    if old_size == new_size:
        if proof:
            raise ProofError(f"sizes are equal, but the proof has {len(proof)} hashes")
        if old_root != new_root:
            raise ProofError("sizes are equal, but the roots differ")
        return
    _check_hash(old_root, "old root", ProofError)
    _check_hash(new_root, "new root", ProofError)
    _check_proof("consistency", proof, len(_consistency_ranges(old_size, new_size)))
    path = list(proof)  # step 1 (an empty path) is caught by the length check above
    if old_size & (old_size - 1) == 0:  # step 2: "If first is an exact power of 2, prepend"
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:  # 6a
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:  # 6b
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:  # 6b-iii
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1  # 6c
    if sn != 0:  # step 7
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")


class Frontier:
    """Compact range: the right-edge perfect-subtree roots, enough to append without a store."""

    def __init__(self) -> None:
        self.size = 0
        self._nodes: list[tuple[int, int, bytes]] = []  # left to right, highest level first

    @classmethod
    def from_nodes(cls, size: int, get_node: GetNode) -> Frontier:
        """Resume from storage: reads exactly ``root_nodes(size)``."""
        frontier = cls()
        frontier._nodes = [(lvl, idx, _fetch(get_node, lvl, idx)) for lvl, idx in root_nodes(size)]
        frontier.size = size
        return frontier

    @classmethod
    def from_bytes(cls, size: int, packed: bytes) -> Frontier:
        """Resume from ``to_bytes``: the ``root_nodes(size)`` hashes, concatenated."""
        coords = root_nodes(size)
        if len(packed) != HASH_SIZE * len(coords):
            raise ValueError(f"a frontier of size {size} has {len(coords)} hashes")
        frontier = cls()
        frontier._nodes = [
            (lvl, idx, packed[i * HASH_SIZE : (i + 1) * HASH_SIZE])
            for i, (lvl, idx) in enumerate(coords)
        ]
        frontier.size = size
        return frontier

    def to_bytes(self) -> bytes:
        return b"".join(h for _, _, h in self._nodes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Same result as ``new_nodes_on_append(self.size, leaf, ...)``.

        While the new node is a right child (odd index), its left sibling is the frontier's
        last node: merge them into their parent, one level up.
        """
        _check_hash(leaf, "leaf")
        level, index, carry = 0, self.size, leaf
        created = [(0, index, leaf)]
        while index & 1:
            carry = node_hash(self._nodes.pop()[2], carry)
            level, index = level + 1, index >> 1
            created.append((level, index, carry))
        self._nodes.append((level, index, carry))
        self.size += 1
        return created

    def root(self) -> bytes:
        """MTH of the leaves appended so far (§2.1.1)."""
        return _fold([h for _, _, h in self._nodes])
