"""Personal information in product samples: detect it, mask it, check that it is masked.

BRIEF §6. A product's sample is shown to every visitor of the catalog, so columns holding
personal information (PIPL art. 4) are masked before it is published. Detectors are pure
predicates on one value, with the published check digit where one exists; a column's kind
comes from its values (``THRESHOLD``) or from a strong cue in its name. A value containing
``*`` is taken as already masked.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from databourse.participants import uscc


class PIKind(StrEnum):
    resident_id = "resident_id"  # 居民身份证号
    mobile = "mobile"  # mainland mobile number
    landline = "landline"  # mainland fixed line with area code
    phone = "phone"  # international E.164 number
    bank_card = "bank_card"
    email = "email"
    uscc = "uscc"  # an organisation's code: detected, but not personal information
    ip = "ip"
    passport = "passport"
    travel_permit = "travel_permit"  # Mainland Travel Permits for HK/Macao residents, etc.
    license_plate = "license_plate"
    iban = "iban"
    ssn = "ssn"  # US social security number form
    name = "name"
    address = "address"
    gps = "gps"
    birth_date = "birth_date"
    personal = "personal"  # declared personal by the merchant, no finer kind known


PERSONAL = frozenset(PIKind) - {PIKind.uscc}
# PIPL art. 28 sensitive PI among the kinds: specific identity, financial accounts, whereabouts.
SENSITIVE = frozenset(
    {
        PIKind.resident_id,
        PIKind.passport,
        PIKind.travel_permit,
        PIKind.bank_card,
        PIKind.iban,
        PIKind.ssn,
        PIKind.gps,
    }
)
# A column is of a kind when at least this share of its non-empty, unmasked values match.
THRESHOLD = 0.8

_CJK = "\u4e00-\u9fff"
# GB 11643-1999: weights 2^(17-i) mod 11 of the first 17 digits; check = map[sum mod 11].
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_MOBILE = re.compile(r"^(?:\+?86|0086)?(1[3-9]\d{9})$")
_LANDLINE = re.compile(r"^(?:\+?86)?(?:\(0\d{2,3}\)|0\d{2,3}-)\d{7,8}(?:-\d{1,6})?$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}$")
# PRC passports E/G + 8 digits, E + letter + 7 digits; other passport series D/S/P likewise.
_PASSPORT = re.compile(r"^[EGDSP](?:\d{8}|[A-HJ-NP-Z]\d{7})$")
# Exit-entry permits: C + 8 digits or C + letter + 7 (HK/Macao), H/M + 8 or 10 (home return).
_PERMIT = re.compile(r"^(?:C(?:\d{8}|[A-HJ-NP-Z]\d{7})|[HM](?:\d{8}|\d{10}))$")
_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE = re.compile(
    rf"^[{_PROVINCES}][A-HJ-NP-Z](?:[A-HJ-NP-Z0-9]{{5,6}}|[A-HJ-NP-Z0-9]{{4}}[挂学警港澳])$"
)
_SSN = re.compile(r"^(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}$")
_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_COORD = re.compile(r"^\(?\s*(-?\d{1,3}\.\d{3,})\s*[,，]\s*(-?\d{1,3}\.\d{3,})\s*\)?$")
_DATE = re.compile(r"^(\d{4})[-/.年]?(\d{1,2})[-/.月]?(\d{1,2})日?$")
# The most common Chinese surnames (single, then compound); a name is a surname + 1–2 chars.
_SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛"
    "郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦"
    "俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房"
    "滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应"
    "臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
_COMPOUND = (
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 令狐 宇文 夏侯 轩辕 司徒 端木 呼延 独孤 南宫"
)
_COMPOUND_SURNAMES = frozenset(_COMPOUND.split())
_NAME_ZH = re.compile(rf"^[{_CJK}]{{2,4}}$")
_NAME_MINORITY = re.compile(rf"^[{_CJK}]{{1,8}}[·•][{_CJK}·•]{{1,16}}$")
_NAME_EN = re.compile(r"^[A-Z][a-z'\-]+(?: [A-Z][a-z'\-]*\.?)*(?: [A-Z][a-z'\-]+)$")
_ADMIN = re.compile(r"省|自治区|特别行政区|市|自治州|地区|盟|区|县|旗|镇|乡|街道")
_STREET = re.compile(r"路|街|大道|巷|弄|胡同|号|村|组|室|栋|幢|楼|单元|小区|大厦|花园")
_ADDRESS_HEAD = re.compile(
    rf"^((?:[{_CJK}]{{2,8}}?(?:省|自治区|特别行政区))?(?:[{_CJK}]{{2,8}}?(?:市|自治州|地区|盟))?)"
)


def _digits(value: str) -> str:
    return re.sub(r"[\s\-]", "", value)


def resident_id_check(first17: str) -> str:
    """The 18th character of a resident identity number (ISO 7064 MOD 11-2)."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def _valid_date(y: int, m: int, d: int) -> bool:
    try:
        date(y, m, d)
    except ValueError:
        return False
    return 1900 <= y <= 2100


def is_resident_id(value: str) -> bool:
    v = value.strip().upper()
    if not re.fullmatch(r"[1-8]\d{16}[\dX]", v):
        return False
    birth = _valid_date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    return birth and resident_id_check(v[:17]) == v[17]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def is_bank_card(value: str) -> bool:
    v = _digits(value)
    return bool(re.fullmatch(r"\d{13,19}", v)) and luhn_ok(v)


def is_mobile(value: str) -> bool:
    return bool(_MOBILE.match(_digits(value)))


def is_landline(value: str) -> bool:
    return bool(_LANDLINE.match(re.sub(r"\s", "", value)))


def is_phone(value: str) -> bool:
    return bool(_E164.match(re.sub(r"[\s\-().]", "", value)))


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value.strip()))


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    return True


def is_iban(value: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10–35, mod 97 = 1."""
    v = re.sub(r"\s", "", value).upper()
    if not _IBAN.match(v):
        return False
    return int("".join(str(int(c, 36)) for c in v[4:] + v[:4])) % 97 == 1


def is_gps(value: str) -> bool:
    """A "lat,lng" pair with at least three decimals (about 100 m), within range."""
    match = _COORD.match(value.strip())
    if not match:
        return False
    lat, lng = float(match.group(1)), float(match.group(2))
    return -90 <= lat <= 90 and -180 <= lng <= 180


def is_coordinate(value: str) -> bool:
    """One latitude or longitude with at least three decimals (column cue needed)."""
    return bool(re.fullmatch(r"-?\d{1,3}\.\d{3,}", value.strip())) and abs(float(value)) <= 180


def is_birth_date(value: str) -> bool:
    match = _DATE.match(value.strip())
    return match is not None and _valid_date(*(int(g) for g in match.groups()))


def is_chinese_name(value: str) -> bool:
    """Surname + one or two characters, or a minority name with a middle dot (weak signal)."""
    v = value.strip()
    if _NAME_MINORITY.match(v):
        return True
    if not _NAME_ZH.match(v):
        return False
    if v[:2] in _COMPOUND_SURNAMES:
        return len(v) in (3, 4)
    return v[0] in _SURNAMES and len(v) in (2, 3)


def is_name(value: str) -> bool:
    return is_chinese_name(value) or bool(_NAME_EN.match(value.strip()))


def is_address(value: str) -> bool:
    """Administrative and street-level cues together: 北京市朝阳区建国路88号."""
    v = value.strip()
    return len(v) >= 6 and bool(_ADMIN.search(v)) and bool(_STREET.search(v))


def _loose_address(value: str) -> bool:
    v = value.strip()
    return len(v) >= 4 and bool(_ADMIN.search(v) or _STREET.search(v) or re.search(r"\d.*,", v))


# Value-only detectors, most specific first: a resident id must win over a bank card.
DETECTORS: dict[PIKind, Callable[[str], bool]] = {
    PIKind.resident_id: is_resident_id,
    PIKind.uscc: uscc.is_valid,
    PIKind.bank_card: is_bank_card,
    PIKind.mobile: is_mobile,
    PIKind.landline: is_landline,
    PIKind.phone: is_phone,
    PIKind.email: is_email,
    PIKind.ip: is_ip,
    PIKind.iban: is_iban,
    PIKind.ssn: lambda v: bool(_SSN.match(v.strip())),
    PIKind.passport: lambda v: bool(_PASSPORT.match(v.strip().upper())),
    PIKind.travel_permit: lambda v: bool(_PERMIT.match(v.strip().upper())),
    PIKind.license_plate: lambda v: bool(_PLATE.match(re.sub(r"[\s·•\-]", "", v).upper())),
    PIKind.gps: is_gps,
    PIKind.address: is_address,
}
# Detectors too weak to trust without a cue in the column name.
CUED: dict[PIKind, Callable[[str], bool]] = {
    PIKind.name: is_name,
    PIKind.address: _loose_address,
    PIKind.birth_date: is_birth_date,
    PIKind.gps: lambda v: is_gps(v) or is_coordinate(v),
}

# Column-name cues, matched on the lower-cased name without separators: as a substring, or
# whole when written "=tel" (short words that hide inside longer ones: tel, lat, ip).
_STRONG_CUES: list[tuple[PIKind, tuple[str, ...]]] = [
    (PIKind.resident_id, ("身份证", "证件号", "idcard", "idno", "idnumber", "residentid")),
    (PIKind.bank_card, ("银行卡", "卡号", "bankcard", "cardno", "cardnumber", "accountno")),
    (PIKind.mobile, ("手机", "mobile", "cellphone")),
    (PIKind.phone, ("电话", "联系方式", "phone", "=tel")),
    (PIKind.email, ("邮箱", "email", "=mail")),
    (PIKind.passport, ("护照", "passport")),
    (PIKind.travel_permit, ("通行证", "回乡证", "台胞证")),
    (PIKind.license_plate, ("车牌", "licenseplate", "plateno", "platenumber")),
    (PIKind.birth_date, ("出生", "生日", "birth", "=dob")),
    (
        PIKind.gps,
        ("经纬度", "经度", "纬度", "坐标", "latitude", "longitude", "=lat", "=lng", "gps"),
    ),
    (PIKind.ip, ("ip地址", "ipaddr", "clientip", "ipv4", "ipv6", "=ip")),
    (PIKind.address, ("地址", "住址", "居住地", "address", "=addr")),
    (PIKind.name, ("姓名", "fullname", "realname", "personname", "customername", "持卡人")),
]
_WEAK_NAME = re.compile(r"^(?:first|last|given|family|sur|contact|holder|user)?name$|^联系人$")


def _cue(column: str) -> tuple[PIKind | None, bool]:
    """The kind a column name suggests and whether the cue is strong enough alone."""
    key = re.sub(r"[\s_\-.]", "", column.lower())
    for kind, cues in _STRONG_CUES:
        if any(key == c[1:] if c.startswith("=") else c in key for c in cues):
            return kind, True
    if _WEAK_NAME.match(key):
        return PIKind.name, False
    return None, False


def _share(values: list[str], test: Callable[[str], bool]) -> float:
    return sum(1 for v in values if test(v)) / len(values)


def _unmasked(values: Sequence[str | None]) -> list[str]:
    return [v.strip() for v in values if v is not None and v.strip() and "*" not in v]


def detect_column(name: str, values: Sequence[str | None]) -> str | None:
    """The PI kind of a column (a ``PIKind`` value), or None when it holds none.

    Values decide first: when at least ``THRESHOLD`` of the non-empty unmasked values pass
    one detector, that is the kind (name, birth date and single coordinates only with a
    cue in the column name). Otherwise a strong name cue (身份证, 手机, email, 姓名, 地址 …)
    decides alone, so a column of malformed or masked numbers is still recognised.
    """
    cue, strong = _cue(name)
    vals = _unmasked(values)
    if vals:
        for kind, test in DETECTORS.items():
            if _share(vals, test) >= THRESHOLD:
                return kind
        if cue in CUED and _share(vals, CUED[cue]) >= THRESHOLD:
            return cue
    return cue if strong else None


def _keep(value: str, head: int, tail: int) -> str:
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def _mask_name(v: str) -> str:
    if re.search(rf"[{_CJK}]", v):
        head = 2 if v[:2] in _COMPOUND_SURNAMES else 1
        return v[:head] + "*" * max(1, len(v) - head)
    return " ".join(part[0] + "***" for part in v.split())


def _mask_address(v: str) -> str:
    head = _ADDRESS_HEAD.match(v)
    kept = head.group(1) if head else ""
    if _STREET.search(kept) or re.search(r"(?<!自治)(?<!行政)(?<!地)区|县", kept):
        kept = ""  # the "city" ran into a district or street: keep nothing
    if not kept and "," in v:  # international form: keep the last two parts (city, country)
        return "****, " + ", ".join(p.strip() for p in v.split(",")[-2:])
    return kept + "****"


def _mask_ip(v: str) -> str:
    ip = ipaddress.ip_address(v)
    if ip.version == 4:
        return ".".join(v.split(".")[:2]) + ".*.*"
    return ":".join(ip.exploded.split(":")[:2]) + ":*"


def _mask_email(v: str) -> str:
    local, _, domain = v.rpartition("@")
    return f"{local[:1]}***@{domain}"


def _mask_birth_date(v: str) -> str:
    match = _DATE.match(v)
    return f"{match.group(1)}-**-**" if match else "******"


def _mask_mobile(v: str) -> str:
    match = _MOBILE.match(_digits(v))
    return _keep(match.group(1), 3, 4) if match else "******"


def _mask_landline(v: str) -> str:
    match = re.match(r"^(?:\+?86)?(\(0\d{2,3}\)|0\d{2,3}-)(\d{7,8})", re.sub(r"\s", "", v))
    return match.group(1) + _keep(match.group(2), 0, 4) if match else "******"


def _mask_coordinate(v: str) -> str:
    return re.sub(r"(-?\d{1,3}\.\d)\d+", r"\1*", v)


_MASKERS: dict[PIKind, tuple[Callable[[str], bool], Callable[[str], str]]] = {
    PIKind.resident_id: (is_resident_id, lambda v: _keep(v.upper(), 6, 4)),
    PIKind.mobile: (is_mobile, _mask_mobile),
    PIKind.landline: (is_landline, _mask_landline),
    PIKind.phone: (is_phone, lambda v: _keep(re.sub(r"[\s\-().]", "", v), 3, 4)),
    PIKind.bank_card: (is_bank_card, lambda v: _keep(_digits(v), 0, 4)),
    PIKind.email: (is_email, _mask_email),
    PIKind.uscc: (uscc.is_valid, lambda v: _keep(v.upper(), 8, 0)),
    PIKind.ip: (is_ip, lambda v: _mask_ip(v.strip())),
    PIKind.iban: (is_iban, lambda v: _keep(re.sub(r"\s", "", v).upper(), 4, 4)),
    PIKind.ssn: (DETECTORS[PIKind.ssn], lambda v: "***-**-" + v[-4:]),
    PIKind.passport: (DETECTORS[PIKind.passport], lambda v: _keep(v.upper(), 1, 3)),
    PIKind.travel_permit: (DETECTORS[PIKind.travel_permit], lambda v: _keep(v.upper(), 1, 3)),
    PIKind.license_plate: (
        DETECTORS[PIKind.license_plate],
        lambda v: _keep(re.sub(r"[\s·•\-]", "", v).upper(), 2, 2),
    ),
    PIKind.name: (lambda v: len(v) >= 2, _mask_name),
    PIKind.address: (lambda v: len(v) >= 2, _mask_address),
    PIKind.gps: (CUED[PIKind.gps], _mask_coordinate),
    PIKind.birth_date: (is_birth_date, _mask_birth_date),
}


def mask_value(kind: str, value: str) -> str:
    """The masked form of one value: 138****5678, 110105********002X, 张*, z***@example.com.

    A value that does not fit its kind's format is replaced whole by ``******``; one that
    already contains ``*`` is kept, so masking twice changes nothing.
    """
    v = value.strip()
    if not v or "*" in v:
        return v
    fits_and_mask = _MASKERS.get(PIKind(kind)) if kind in set(PIKind) else None
    if fits_and_mask and fits_and_mask[0](v):
        return fits_and_mask[1](v)
    return "******"


@dataclass(frozen=True)
class MaskedSample:
    rows: list[list[str | None]]
    masked_columns: dict[str, str]  # column → PI kind


def _column_values(
    columns: Sequence[str], rows: Sequence[Sequence[str | None]]
) -> list[list[str | None]]:
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"row {i} has {len(row)} values for {len(columns)} columns")
    return [[row[j] for row in rows] for j in range(len(columns))]


def mask_sample(
    columns: Sequence[str],
    rows: Sequence[Sequence[str | None]],
    declared_personal: set[str],
) -> MaskedSample:
    """Mask every column detected as personal or declared personal by the merchant."""
    masked: dict[str, str] = {}
    for column, values in zip(columns, _column_values(columns, rows), strict=True):
        kind = detect_column(column, values)
        if kind in PERSONAL:
            masked[column] = str(kind)
        elif column in declared_personal:
            masked[column] = str(kind or _cue(column)[0] or PIKind.personal)
    out = [
        [
            v if v is None or col not in masked else mask_value(masked[col], v)
            for col, v in zip(columns, row, strict=True)
        ]
        for row in rows
    ]
    return MaskedSample(rows=out, masked_columns=masked)


def unmasked_personal(columns: Sequence[str], rows: Sequence[Sequence[str | None]]) -> list[str]:
    """Columns in which some sample value still looks like personal information.

    Kinds are detected among the unmasked values only, so a column masked in four rows of
    five is still reported for its fifth.
    """
    found = []
    for column, values in zip(columns, _column_values(columns, rows), strict=True):
        vals = _unmasked(values)
        kind = detect_column(column, vals)
        if kind is None or kind not in PERSONAL:
            continue
        tests = [t for t in (DETECTORS.get(PIKind(kind)), CUED.get(PIKind(kind))) if t]
        if any(test(v) for test in tests for v in vals):
            found.append(column)
    return found
