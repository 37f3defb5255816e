"""Canonical JSON: the fast path gives exactly the bytes of the RFC 8785 library."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from databourse.hashing import _plain, canonical

scalars = (
    st.datetimes(timezones=st.just(UTC))
    | st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_canonical_matches_rfc8785(value: Any) -> None:
    try:
        expected = rfc8785.dumps(_plain(value))
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, ValueError):
        return  # lone surrogates and the like: not JSON the exchange ever writes
    assert canonical(value) == expected


def test_keys_sort_by_utf16_code_units() -> None:
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16: before U+FB01, unlike by code point
    value = {"\ufb01": 1, "\U0001f600": 2, "a": 3}
    assert canonical(value) == rfc8785.dumps(value)
    assert canonical(value).index("😀".encode()) < canonical(value).index("ﬁ".encode())


def test_controls_and_large_numbers() -> None:
    value = {"s": '\x00\x08\t\n\x0c\r\x1f"\\\u2028\x7f', "n": [2**53 - 1, -(2**53) + 1, 1.5]}
    assert canonical(value) == rfc8785.dumps(value)
