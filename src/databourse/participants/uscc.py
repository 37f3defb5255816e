"""Unified Social Credit Code (统一社会信用代码) validation per GB 32100-2015.

Pure functions, no I/O. The code is 18 characters:
position 1 registration authority, 2 organisation type, 3–8 administrative division
(GB/T 2260, digits), 9–17 the organisation code (GB 11714), 18 the check character.
"""

from __future__ import annotations

# GB 32100-2015 §4.3: the 31-character alphabet (no I, O, Z, S, V) and its values 0..30.
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
VALUES = {c: i for i, c in enumerate(ALPHABET)}
# GB 32100-2015 §5: weight of position i is 3^(i-1) mod 31.
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
# GB 32100-2015 Table 1: registration authority codes.
AUTHORITIES = frozenset("123456789ANY")


class USCCError(ValueError):
    """The code is not a well-formed Unified Social Credit Code; the message says why."""


def check_character(first17: str) -> str:
    """The 18th character: C18 = 31 - (Σ Ci·Wi mod 31), with 31 written as '0'."""
    total = sum(VALUES[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def normalise(code: str) -> str:
    return code.strip().upper()


def validate(code: str) -> str:
    """Return the normalised code, or raise ``USCCError`` naming the first defect."""
    code = normalise(code)
    if len(code) != 18:
        raise USCCError(f"a USCC has 18 characters, this one has {len(code)}")
    bad = [c for c in code if c not in VALUES]
    if bad:
        raise USCCError(f"character {bad[0]!r} is not in the GB 32100 alphabet")
    if code[0] not in AUTHORITIES:
        raise USCCError(f"{code[0]!r} is not a registration authority code")
    if not code[2:8].isdigit():
        raise USCCError("positions 3-8 must be a numeric administrative division code")
    expected = check_character(code[:17])
    if code[17] != expected:
        raise USCCError(f"check character is {code[17]!r}, expected {expected!r}")
    return code


def is_valid(code: str) -> bool:
    try:
        validate(code)
    except USCCError:
        return False
    return True
