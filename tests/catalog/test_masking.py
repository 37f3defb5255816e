"""Personal information in samples: detectors with check digits, masking, the listing check."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from databourse.catalog.masking import (
    detect_column,
    is_bank_card,
    is_birth_date,
    is_chinese_name,
    is_email,
    is_gps,
    is_iban,
    is_ip,
    is_landline,
    is_mobile,
    is_resident_id,
    mask_sample,
    mask_value,
    unmasked_personal,
)

# GB 11643-1999 as published: weights of the 17 digits and the check-character map.
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CHECK_MAP = "10X98765432"


def with_check(first17: str) -> str:
    return first17 + CHECK_MAP[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def luhn_complete(payload: str) -> str:
    for d in "0123456789":
        candidate = payload + d
        total = sum(
            (n * 2 - 9 if n * 2 > 9 else n * 2) if i % 2 else n
            for i, n in enumerate(int(c) for c in reversed(candidate))
        )
        if total % 10 == 0:
            return candidate
    raise AssertionError


def test_published_sample_resident_id_is_valid() -> None:
    assert with_check("11010519491231002") == "11010519491231002X"
    assert is_resident_id("11010519491231002X")
    assert is_resident_id("11010519491231002x")


@pytest.mark.parametrize(
    "value",
    [
        "110105194912310021",  # wrong check character
        "11010519491331002X",  # month 13
        with_check("11010519490230002"),  # 30 February
        with_check("01010519491231002"),  # no region starts with 0
        "11010519491231002",  # 17 characters
        "1101051949123100XX",
    ],
)
def test_malformed_resident_ids_are_refused(value: str) -> None:
    assert not is_resident_id(value)


birthdays = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))


@given(st.integers(110000, 829999), birthdays, st.integers(0, 999), st.data())
def test_every_single_digit_error_in_a_resident_id_is_caught(
    region: int, born: date, seq: int, data: st.DataObject
) -> None:
    rid = with_check(f"{region}{born:%Y%m%d}{seq:03d}")
    assert is_resident_id(rid)
    pos = data.draw(st.integers(0, 17))
    alphabet = "0123456789X" if pos == 17 else "0123456789"
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != rid[pos]]))
    assert not is_resident_id(rid[:pos] + replacement + rid[pos + 1 :])


def test_luhn_cards() -> None:
    assert is_bank_card("4111111111111111")
    assert is_bank_card("4111 1111 1111 1111")
    assert is_bank_card(luhn_complete("622202100112233"))  # 16 digits, UnionPay-like
    assert not is_bank_card("4111111111111112")
    assert not is_bank_card("411111111111")  # 12 digits
    assert not is_bank_card(luhn_complete("1" * 19))  # 20 digits


@given(st.text("0123456789", min_size=12, max_size=18), st.data())
def test_every_single_digit_error_in_a_card_is_caught(payload: str, data: st.DataObject) -> None:
    card = luhn_complete(payload)
    assert is_bank_card(card)
    pos = data.draw(st.integers(0, len(card) - 1))
    digit = data.draw(st.sampled_from([c for c in "0123456789" if c != card[pos]]))
    assert not is_bank_card(card[:pos] + digit + card[pos + 1 :])


@pytest.mark.parametrize(
    ("test", "good", "bad"),
    [
        (is_mobile, ["13812345678", "+86 138 1234 5678", "0086-19912345678"], ["12812345678"]),
        (is_landline, ["010-12345678", "(0755)87654321"], ["12345678", "01012345678"]),
        (is_email, ["zhang.san@example.com.cn"], ["zhang@", "@example.com", "a b@c.com"]),
        (is_ip, ["192.168.1.10", "2001:db8::1"], ["256.1.1.1", "1.2.3"]),
        (is_iban, ["GB82 WEST 1234 5698 7654 32"], ["GB82 WEST 1234 5698 7654 33"]),
        (
            is_gps,
            ["39.904200,116.407400", "(31.2304, 121.4737)"],
            ["95.1234,10.1234", "39.9,116.4"],
        ),
        (is_birth_date, ["1990-05-15", "19900515", "1990年5月15日"], ["1990-02-30", "hello"]),
        (is_chinese_name, ["张三", "欧阳娜娜", "阿依古丽·买买提"], ["北京", "数据交易所", "张"]),
    ],
)
def test_detectors(test: object, good: list[str], bad: list[str]) -> None:
    assert callable(test)
    assert all(test(v) for v in good), [v for v in good if not test(v)]
    assert not any(test(v) for v in bad), [v for v in bad if test(v)]


# --- columns -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "values", "kind"),
    [
        ("col_a", ["11010519491231002X", with_check("44030419900101123"), None, ""], "resident_id"),
        ("col_b", ["13812345678", "13912345678", "15012345678", "n/a", "18612345678"], "mobile"),
        ("col_c", ["4111111111111111", "5500005555555559"], "bank_card"),
        ("col_d", ["a@example.com", "b@example.org"], "email"),
        ("col_e", ["91350100M000100Y43", "911100007109288314"], "uscc"),
        ("col_f", ["10.0.0.1", "2001:db8::1"], "ip"),
        ("col_g", ["京A12345", "粤B·D12345"], "license_plate"),
        ("col_h", ["北京市朝阳区建国路88号", "广东省深圳市南山区科技园路1号"], "address"),
        ("姓名", ["张三", "李四"], "name"),
        ("name", ["张三", "李四"], "name"),
        ("birthday", ["1990-05-15"], "birth_date"),
        ("latitude", ["39.904200"], "gps"),
        # A strong cue decides alone, even over values that are already masked or invalid.
        ("身份证号", ["110105********002X"], "resident_id"),
        ("手机", ["unknown"], "mobile"),
        ("Email Address", [], "email"),
        ("ip_address", [], "ip"),
        ("住址", [None], "address"),
    ],
)
def test_detect_column(name: str, values: list[str | None], kind: str) -> None:
    assert detect_column(name, values) == kind


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("name", ["北京", "上海"]),  # weak cue, values are not personal names
        ("city", ["张三", "李四"]),  # names without a cue are too weak a signal
        ("created", ["1990-05-15"]),  # a date is a birth date only with a cue
        ("template", ["x"]),  # "plate" inside a longer word is no cue
        ("order_no", ["4111111111111111", "1234567890123456", "1111222233334444"]),
        ("region", ["北京市朝阳区"]),  # no street: a region, not an address
        ("amount", ["12", "13"]),
    ],
)
def test_columns_without_personal_information(name: str, values: list[str | None]) -> None:
    assert detect_column(name, values) is None


def test_threshold_needs_most_values_to_match() -> None:
    values = ["13812345678"] * 7 + ["hello"] * 3
    assert detect_column("col", values) is None
    assert detect_column("col", [*values[:7], "hello"]) == "mobile"


# --- masking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "masked"),
    [
        ("resident_id", "11010519491231002X", "110105********002X"),
        ("mobile", "13812345678", "138****5678"),
        ("mobile", "+86 138 1234 5678", "138****5678"),
        ("landline", "010-12345678", "010-****5678"),
        ("bank_card", "4111 1111 1111 1111", "************1111"),
        ("email", "zhang.san@example.com", "z***@example.com"),
        ("name", "张三", "张*"),
        ("name", "张三丰", "张**"),
        ("name", "欧阳娜娜", "欧阳**"),
        ("name", "John Smith", "J*** S***"),
        ("address", "北京市朝阳区建国路88号", "北京市****"),
        ("address", "广东省深圳市南山区科技园路1号", "广东省深圳市****"),
        ("address", "朝阳区建国路88号", "****"),
        ("ip", "192.168.1.10", "192.168.*.*"),
        ("gps", "39.904200,116.407400", "39.9*,116.4*"),
        ("birth_date", "1990-05-15", "1990-**-**"),
        ("license_plate", "京A12345", "京A***45"),
        ("passport", "E12345678", "E*****678"),
        ("mobile", "not a number", "******"),
        ("personal", "糖尿病", "******"),
        ("unknown-kind", "x", "******"),
        ("mobile", "138****5678", "138****5678"),
        ("mobile", "", ""),
    ],
)
def test_mask_value(kind: str, value: str, masked: str) -> None:
    assert mask_value(kind, value) == masked


COLUMNS = ["姓名", "手机号", "身份证号", "company", "diagnosis", "city"]
ROWS: list[list[str | None]] = [
    ["张三", "13812345678", "11010519491231002X", "91350100M000100Y43", "flu", "北京"],
    ["李四", "13912345678", with_check("44030419900101123"), "911100007109288314", None, "深圳"],
    [None, None, None, None, "cold", "上海"],
]


def test_mask_sample_masks_detected_and_declared_columns_only() -> None:
    sample = mask_sample(COLUMNS, ROWS, declared_personal={"diagnosis"})
    assert sample.masked_columns == {
        "姓名": "name",
        "手机号": "mobile",
        "身份证号": "resident_id",
        "diagnosis": "personal",
    }
    assert sample.rows[0] == [
        "张*",
        "138****5678",
        "110105********002X",
        "91350100M000100Y43",  # an organisation's code is not personal information
        "******",
        "北京",
    ]
    assert sample.rows[2] == [None, None, None, None, "******", "上海"]
    assert ROWS[0][0] == "张三"  # the input is not modified


def test_masking_twice_changes_nothing() -> None:
    once = mask_sample(COLUMNS, ROWS, {"diagnosis"})
    twice = mask_sample(COLUMNS, once.rows, {"diagnosis"})
    assert twice.rows == once.rows


def test_rows_must_match_the_columns() -> None:
    with pytest.raises(ValueError, match="row 1"):
        mask_sample(["a", "b"], [["1", "2"], ["1"]], set())


def test_unmasked_personal_reports_leaks_until_masked() -> None:
    assert unmasked_personal(COLUMNS, ROWS) == ["姓名", "手机号", "身份证号"]
    masked = mask_sample(COLUMNS, ROWS, set()).rows
    assert unmasked_personal(COLUMNS, masked) == []


def test_a_single_unmasked_row_is_still_a_leak() -> None:
    rows = [["138****5678"], ["139****5678"], ["13712345678"]]
    assert unmasked_personal(["col"], rows) == ["col"]


@given(st.dates(min_value=date(1950, 1, 1), max_value=date(2010, 1, 1)), st.integers(0, 999))
def test_masked_resident_ids_hide_the_birth_date(born: date, seq: int) -> None:
    rid = with_check(f"310104{born:%Y%m%d}{seq:03d}")
    masked = mask_value("resident_id", rid)
    assert masked[:6] == "310104" and masked[-4:] == rid[-4:]
    assert f"{born:%Y%m%d}" not in masked and not is_resident_id(masked)
