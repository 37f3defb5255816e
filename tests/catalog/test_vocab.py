"""Controlled vocabularies: every term labelled, territories per ISO 3166."""

from __future__ import annotations

import pytest

from databourse.catalog.vocab import (
    COUNTRIES,
    ZH_LABELS,
    Industry,
    ProductKind,
    Purpose,
    UpdateFrequency,
    outside_mainland,
    territory_error,
    within,
)


@pytest.mark.parametrize("vocab", [Purpose, Industry, UpdateFrequency, ProductKind])
def test_every_term_has_a_chinese_label(vocab: type[Purpose]) -> None:
    assert set(ZH_LABELS[vocab]) == {t.value for t in vocab}
    assert all(term.zh for term in vocab)


def test_terms_are_their_codes() -> None:
    assert Purpose("risk_control") == "risk_control"
    assert Purpose.risk_control.zh == "风险控制"
    assert ProductKind.compute.zh == "隐私计算"
    assert {k.value for k in ProductKind} == {"dataset", "api", "compute"}


def test_iso_3166_alpha2_has_its_249_assigned_codes() -> None:
    assert len(COUNTRIES) == 249
    assert {"CN", "HK", "MO", "TW", "US", "DE", "SG"} <= COUNTRIES
    assert all(len(c) == 2 and c.isupper() for c in COUNTRIES)


@pytest.mark.parametrize("code", ["CN", "CN-SH", "CN-GD", "US-CA", "GB-ENG", "HK"])
def test_valid_territories(code: str) -> None:
    assert territory_error(code) is None


@pytest.mark.parametrize("code", ["XX", "cn", "CHN", "CN-", "CN-SHAN", "XX-01", "CN_SH", ""])
def test_invalid_territories_say_why(code: str) -> None:
    assert territory_error(code)


def test_within_and_cross_border() -> None:
    assert within("CN-SH", "CN") and within("CN", "CN")
    assert not within("CN", "CN-SH") and not within("HK", "CN") and not within("CN-SH", "CN-BJ")
    assert outside_mainland(["CN", "CN-SH", "HK", "SG"]) == ["HK", "SG"]
