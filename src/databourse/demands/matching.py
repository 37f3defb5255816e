"""供需撮合: rank listed products for a buyer's demand, and demands for a merchant's product.

Every match carries its reasons, one per factor, so a buyer or merchant sees why a product
was suggested (and an operator can check the suggestion was not arbitrary). The score is a
weighted sum of factor scores in [0, 1] (``WEIGHTS``). Where the demand says nothing about a
factor (no budget, no industry, no quality report yet) the factor scores a neutral 0.5, so
silence neither helps nor hurts one candidate against another.

Two rules are not weights: a product whose usage policy does not allow the demand's purpose
is never a match (no score can make a forbidden use allowed), and a candidate that shares no
text and none of the required fields is not a match either, however cheap it is.
Pure: no I/O; text is analysed by ``catalog.text.analyze`` (Chinese and English).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Any

from databourse.catalog.facts import FieldFacts, ListingFacts
from databourse.catalog.text import analyze
from databourse.demands.facts import DemandFacts

# Text dominates because it is the only factor that says what the data is about; required
# fields come next (a product without them cannot serve the demand); price decides between
# otherwise similar products; the rest are tie-breakers. Grade is reported, not weighted.
WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "text": 0.45,
        "fields": 0.25,
        "price": 0.15,
        "kind": 0.05,
        "industry": 0.05,
        "quality": 0.05,
        "grade": 0.0,
    }
)
# A candidate of an accepted kind, neutral on everything else and sharing no text, scores
# 0.30: by default a match must do at least as well (it already needs shared text or a
# required field to count at all). On the labelled tests, good matches score 0.45–0.8.
DEFAULT_MIN_SCORE = 0.3
NEUTRAL = 0.5
# Price 25% over budget halves the price score; 50% over quarters it.
OVER_BUDGET_HALVING = 0.25
# Words every demand uses ("we need data for…") that say nothing about which data.
MATCH_STOPWORDS = "我们 需要 希望 寻求 用于 提供 相关 数据 data need want seek look provide use"

_IDENTIFIER_SPLIT = re.compile(r"[_\-.]+|(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Reason:
    """One factor of a match: its score in [0, 1] and a sentence saying why."""

    factor: str  # "text" | "fields" | "price" | "kind" | "industry" | "quality" | "grade"
    score: float
    detail: str


@dataclass(frozen=True)
class Match:
    demand_id: str
    product_id: str
    score: float
    reasons: tuple[Reason, ...]


def rank_products(
    demand: DemandFacts,
    listings: Sequence[ListingFacts],
    limit: int = 10,
    min_score: float = DEFAULT_MIN_SCORE,
) -> list[Match]:
    """The best products for a demand, best first; equal scores ordered by product id."""
    usable = [x for x in listings if purpose_allowed(x.policy, demand.purpose)]
    space = _TfIdf([_terms(_listing_texts(x)) for x in usable])
    similar = _similar(space, _demand_texts(demand))
    matches = [_match(demand, listing, similar(i)) for i, listing in enumerate(usable)]
    return _best(matches, limit, min_score, key=lambda m: m.product_id)


def rank_demands(
    listing: ListingFacts,
    demands: Sequence[DemandFacts],
    limit: int = 10,
    min_score: float = DEFAULT_MIN_SCORE,
) -> list[Match]:
    """The demands a product best serves, best first; equal scores ordered by demand id."""
    usable = [d for d in demands if purpose_allowed(listing.policy, d.purpose)]
    space = _TfIdf([_terms(_demand_texts(d)) for d in usable])
    similar = _similar(space, _listing_texts(listing))
    matches = [_match(demand, listing, similar(i)) for i, demand in enumerate(usable)]
    return _best(matches, limit, min_score, key=lambda m: m.demand_id)


def purpose_allowed(policy: Mapping[str, Any], purpose: str) -> bool:
    """Whether a usage policy lets the data be used for a purpose.

    A policy without a "purposes" list does not restrict purpose; one with a list allows only
    what it names (an empty list allows nothing).
    """
    purposes = policy.get("purposes")
    if purposes is None:
        return True
    return _purpose_key(purpose) in {_purpose_key(p) for p in purposes}


def _best(
    matches: Iterable[Match | None], limit: int, min_score: float, key: Callable[[Match], str]
) -> list[Match]:
    kept = [m for m in matches if m is not None and m.score >= min_score]
    kept.sort(key=lambda m: (-m.score, key(m)))
    return kept[: max(limit, 0)]


def _match(
    demand: DemandFacts, listing: ListingFacts, text: tuple[float, list[str]]
) -> Match | None:
    similarity, shared = text
    found, missing = field_coverage(demand.required_fields, listing.fields)
    if similarity <= 0 and not found:
        return None
    reasons = (
        _text_reason(similarity, shared),
        _fields_reason(found, missing),
        _price_reason(demand, listing),
        _kind_reason(demand, listing),
        _industry_reason(demand, listing),
        _quality_reason(listing),
        _grade_reason(listing),
    )
    score = sum(WEIGHTS[r.factor] * r.score for r in reasons)
    return Match(demand.id, listing.id, round(score, 4), reasons)


# ---------------------------------------------------------------- text


class _TfIdf:
    """TF-IDF vectors over a candidate set, compared by cosine.

    Term frequency is dampened (1 + ln tf) so one repeated word cannot dominate; IDF is
    smoothed, ln((1 + n) / (1 + df)) + 1, as if one extra document held every term, so a term
    in all candidates still counts a little and a term in none does not divide by zero.
    """

    def __init__(self, docs: Sequence[list[str]]) -> None:
        self._n = len(docs)
        counts = [Counter(d) for d in docs]
        df: Counter[str] = Counter(t for c in counts for t in c)
        self._idf = {t: math.log((1 + self._n) / (1 + k)) + 1 for t, k in df.items()}
        self._docs = [self._weigh(c) for c in counts]
        self._norms = [math.sqrt(sum(w * w for w in d.values())) for d in self._docs]

    def vector(self, terms: list[str]) -> dict[str, float]:
        return self._weigh(Counter(terms))

    def similarity(self, query: dict[str, float], index: int) -> tuple[float, list[str]]:
        """Cosine of the query and a document, with the shared terms that weigh most."""
        doc = self._docs[index]
        parts = {t: w * doc[t] for t, w in query.items() if t in doc}
        norm = math.sqrt(sum(w * w for w in query.values())) * self._norms[index]
        if not parts or norm == 0:
            return 0.0, []
        top = sorted(parts, key=lambda t: (-parts[t], t))
        return min(1.0, sum(parts[t] for t in sorted(parts)) / norm), top

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        unseen = math.log(1 + self._n) + 1
        return {t: (1 + math.log(c)) * self._idf.get(t, unseen) for t, c in counts.items()}


@cache
def _stopwords() -> frozenset[str]:
    """MATCH_STOPWORDS as analysed terms (analysed on first use: jieba loads lazily)."""
    return frozenset(analyze(MATCH_STOPWORDS))


def _terms(texts: Iterable[str]) -> list[str]:
    stop = _stopwords()
    return [t for text in texts for t in analyze(text) if t not in stop]


def _demand_texts(d: DemandFacts) -> list[str]:
    """The demand's text; the title counts twice, as the buyer's own summary of the need."""
    return [d.title, d.title, d.need, d.scenario]


def _listing_texts(x: ListingFacts) -> list[str]:
    """The listing's text; the title counts twice, as the merchant's summary of the data."""
    fields = [t for f in x.fields for t in (_words(f.name), f.meaning)]
    return [x.title, x.title, x.summary, *x.tags, *fields, *x.scenarios]


def _similar(space: _TfIdf, query_texts: list[str]) -> Callable[[int], tuple[float, list[str]]]:
    """Similarity of the query to candidate i, shared terms shown as the query wrote them."""
    query = space.vector(_terms(query_texts))
    # Stems are for matching, not for reading: show "rainfall", not "rainfal".
    written: dict[str, str] = {}
    for text in query_texts:
        for word in re.findall(r"[^\W\d_]+", unicodedata.normalize("NFKC", text).lower()):
            if not _CJK.search(word):
                for term in analyze(word):
                    written.setdefault(term, word)

    def similar(i: int) -> tuple[float, list[str]]:
        score, shared = space.similarity(query, i)
        return score, [written.get(t, t) for t in shared]

    return similar


def _text_reason(similarity: float, shared: list[str]) -> Reason:
    if similarity <= 0:
        return Reason("text", 0.0, "No words in common between the demand and the product.")
    terms = ", ".join(shared[:5])
    return Reason(
        "text", round(similarity, 4), f"Text similarity {similarity:.2f} (shared terms: {terms})."
    )


# ---------------------------------------------------------------- required fields


def field_coverage(
    required: Sequence[str], fields: Sequence[FieldFacts]
) -> tuple[list[tuple[str, FieldFacts]], list[str]]:
    """Which required fields a product has (with the field that has it) and which it lacks.

    A requirement is met by a field whose name or meaning equals it (ignoring case and
    punctuation), contains it or is contained in it (Chinese, two characters or more: 手机号
    in 手机号码), or whose analysed words include all of its words (mobile phone → field
    ``phone`` meaning "mobile phone number").
    """
    found: list[tuple[str, FieldFacts]] = []
    missing: list[str] = []
    for req in required:
        if not req.strip():
            continue
        best = max(fields, key=lambda f: _field_grade(req, f), default=None)
        if best is not None and _field_grade(req, best) > 0:
            found.append((req, best))
        else:
            missing.append(req)
    return found, missing


def _field_grade(req: str, f: FieldFacts) -> int:
    """3: same name or meaning; 2: Chinese containment; 1: all words present; 0: no."""
    r = _norm(req)
    if not r:
        return 0
    texts = [t for t in (_norm(f.name), _norm(f.meaning)) if t]
    if r in texts:
        return 3
    if _CJK.search(r) and any(
        (len(r) >= 2 and r in t) or (len(t) >= 2 and _CJK.search(t) and t in r) for t in texts
    ):
        return 2
    wanted = _term_set(_words(req))
    return 1 if wanted and wanted <= _term_set(_words(f.name)) | _term_set(f.meaning) else 0


@lru_cache(maxsize=65536)
def _term_set(text: str) -> frozenset[str]:
    """Analysed terms of a short text (a field name or meaning), cached: fields repeat."""
    return frozenset(analyze(text))


def _fields_reason(found: list[tuple[str, FieldFacts]], missing: list[str]) -> Reason:
    total = len(found) + len(missing)
    if total == 0:
        return Reason("fields", NEUTRAL, "The demand names no required fields.")
    names = ", ".join(
        f.name if _norm(req) == _norm(f.name) else f"{f.name} for {req}" for req, f in found
    )
    detail = f"{len(found)} of {total} required fields"
    detail += f": {names}" if found else ""
    detail += f" (missing: {', '.join(missing)})." if missing else "."
    return Reason("fields", round(len(found) / total, 4), detail)


# ---------------------------------------------------------------- the other factors


def _price_reason(d: DemandFacts, x: ListingFacts) -> Reason:
    price = _money(x.min_price_fen, x.currency)
    if x.min_price_fen <= 0:
        return Reason("price", 1.0, "A free plan is available.")
    if d.budget_max_fen is None:
        return Reason("price", NEUTRAL, f"Lowest price {price}; the demand states no budget.")
    budget = _money(d.budget_max_fen, d.currency)
    if x.currency.upper() != d.currency.upper():
        return Reason(
            "price", NEUTRAL, f"Lowest price {price} is not comparable with a budget of {budget}."
        )
    if x.min_price_fen <= d.budget_max_fen:
        return Reason("price", 1.0, f"Lowest price {price} is within the budget of {budget}.")
    if d.budget_max_fen <= 0:
        return Reason("price", 0.0, f"Lowest price {price}; the demand wants free data.")
    over = (x.min_price_fen - d.budget_max_fen) / d.budget_max_fen
    score = 0.5 ** (over / OVER_BUDGET_HALVING)
    return Reason(
        "price", round(score, 4), f"Lowest price {price} is {over:.0%} over the budget of {budget}."
    )


def _kind_reason(d: DemandFacts, x: ListingFacts) -> Reason:
    if not d.kinds:
        return Reason("kind", 1.0, f"A {x.kind} product; the demand accepts any kind.")
    if x.kind in d.kinds:
        return Reason("kind", 1.0, f"A {x.kind} product, a kind the demand accepts.")
    wanted = ", ".join(d.kinds)
    return Reason("kind", 0.0, f"A {x.kind} product; the demand asks for {wanted}.")


def _industry_reason(d: DemandFacts, x: ListingFacts) -> Reason:
    if not d.industry:
        return Reason("industry", NEUTRAL, "The demand names no industry.")
    if d.industry.strip().lower() == x.industry.strip().lower():
        return Reason("industry", 1.0, f"Same industry ({x.industry}).")
    return Reason("industry", 0.0, f"Industry {x.industry or 'unstated'}, not {d.industry}.")


def _quality_reason(x: ListingFacts) -> Reason:
    if x.quality_score is None:
        return Reason("quality", NEUTRAL, "No quality report yet.")
    q = min(max(x.quality_score, 0.0), 100.0)
    return Reason("quality", round(q / 100, 4), f"Quality score {q:g} of 100.")


def _grade_reason(x: ListingFacts) -> Reason:
    if x.grade == "important":
        detail = "Important data (重要数据): its use needs the exchange's extra review."
    else:
        detail = f"Grade {x.grade or 'unstated'}: no extra review for its use."
    return Reason("grade", NEUTRAL, detail)


# ---------------------------------------------------------------- helpers


def _words(identifier: str) -> str:
    """A field name as words: id_number → id number, mobileNo → mobile No."""
    return _IDENTIFIER_SPLIT.sub(" ", identifier)


def _norm(text: str) -> str:
    return _NON_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def _purpose_key(purpose: str) -> str:
    return re.sub(r"[\s\-]+", "_", purpose.strip().casefold())


def _money(fen: int, currency: str) -> str:
    return f"{fen / 100:,.2f} {currency}"
