"""GB 32100-2015 check characters on published and corrupted codes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from databourse.participants.uscc import ALPHABET, USCCError, check_character, is_valid, validate

# Codes printed on public business licences (company registration records).
PUBLISHED = ["91350100M000100Y43", "911100007109288314", "91110108551385082Q"]


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    assert validate(code) == code
    assert validate(code.lower() + "  ") == code


@pytest.mark.parametrize("code", PUBLISHED)
def test_every_single_character_corruption_is_caught(code: str) -> None:
    for pos in range(18):
        for c in ALPHABET:
            if c == code[pos]:
                continue
            corrupted = code[:pos] + c + code[pos + 1 :]
            # Changing the registration authority or division digits may break the
            # format rules instead of the checksum: either way it must be refused.
            assert not is_valid(corrupted), corrupted


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("91350100M000100Y4", "18 characters"),
        ("91350100M000100Y433", "18 characters"),
        ("91350100M000100I43", "alphabet"),
        ("B1350100M000100Y43", "registration authority"),
        ("913501A0M000100Y43", "administrative division"),
        ("91350100M000100Y44", "check character"),
    ],
)
def test_defects_are_named(code: str, why: str) -> None:
    with pytest.raises(USCCError, match=why):
        validate(code)


@given(st.text(alphabet=ALPHABET, min_size=9, max_size=9), st.sampled_from("1593"))
def test_generated_codes_round_trip(org_code: str, authority: str) -> None:
    body = authority + "1" + "110105" + org_code
    assert is_valid(body + check_character(body))
