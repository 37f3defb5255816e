"""The catalog's search index: full text in Chinese and English, filters, facets, sorting.

An in-process tantivy index held in RAM. It is a cache of the listed products, rebuildable
from the database at any time (``replace_all``); ``applied_seq`` records the last ledger
sequence number the caller applied to it, so a catch-up knows where to resume.

Text is analysed in Python by :func:`databourse.catalog.text.analyze` (jieba segmentation,
English stemming) and stored space-separated; the index splits it on whitespace only, and a
query is analysed by the same function, so index and query always agree. A query is a
should-clause of term queries (never the query parser: user text cannot raise), weighted by
field, and must match at least one term.

Facets are exact tantivy terms aggregations over fast columns, counted over the whole
filtered result set, never only the page. A filtered dimension is counted *without its own
filter* (one more aggregation per filtered dimension), so a buyer who picked ``kind=api``
still sees how many datasets would match. Non-relevance sorts order on one text fast field
per sort, holding the sort value followed by the product id; relevance orders equal scores
by id too. Either way ties are broken by id and pages concatenate to the full list.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import tantivy
from tantivy import FieldType, Occur, Order, Query

from databourse.catalog.errors import InvalidQuery
from databourse.catalog.facts import ListingFacts
from databourse.catalog.text import analyze, analyzed

SORTS = ("relevance", "newest", "price_asc", "price_desc", "title")
MAX_LIMIT = 100
MAX_OFFSET = 10_000  # deeper pages cost more than any buyer needs
MAX_TEXT = 2_000  # characters of query text analysed (a demand's text can be long)
MAX_TERMS = 32  # distinct analysed terms kept: each adds a clause per text field
FACET_SIZE = 100  # values returned per terms facet (merchants can be many)
# Price bands in fen over ListingFacts.min_price_fen: (key, from inclusive, to exclusive).
PRICE_BANDS: tuple[tuple[str, int | None, int | None], ...] = (
    ("free", None, 1),
    ("under_1k", 1, 100_000),
    ("1k_10k", 100_000, 1_000_000),
    ("10k_100k", 1_000_000, 10_000_000),
    ("100k_up", 10_000_000, None),
)
# Text fields and their weight in the score: a title match says most about a product.
BOOSTS = {"title": 4.0, "tags": 2.5, "fields": 1.5, "description": 1.0, "other": 0.5}
# Facets, each named after the index field it counts, in the order results list them.
FACETS = ("kind", "industry", "grade", "update_frequency", "merchant", "has_sample", "price_band")
# Keyword filters: index field (also the filter's dimension name) -> SearchQuery attribute.
_KEYWORDS = {
    "kind": "kinds",
    "industry": "industries",
    "category": "categories",
    "grade": "grades",
    "update_frequency": "update_frequencies",
    "merchant": "merchants",
}
_SORT_FIELD = {s: f"sort_{s}" for s in SORTS if s != "relevance"}
_TOKENIZER = "databourse_terms"
_U64_MAX = 2**64 - 1
_SPLIT_NAME = re.compile(r"[_\-.]+|(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class SearchQuery:
    """What a buyer asks; each filter tuple is OR within, AND across dimensions."""

    text: str = ""  # free text, zh or en or mixed; empty = browse all
    kinds: tuple[str, ...] = ()
    industries: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    grades: tuple[str, ...] = ()
    update_frequencies: tuple[str, ...] = ()
    merchants: tuple[str, ...] = ()  # org ids
    price_min_fen: int | None = None  # on ListingFacts.min_price_fen, inclusive
    price_max_fen: int | None = None  # inclusive
    has_sample: bool | None = None
    sort: str = "relevance"  # one of SORTS; without text, "relevance" means "newest"
    offset: int = 0
    limit: int = 20  # 0..MAX_LIMIT; 0 returns only the total and facets
    facets: bool = True  # False skips the facet aggregations


@dataclass(frozen=True)
class Hit:
    id: str
    score: float  # BM25 score for a relevance sort, 0.0 for the other sorts
    highlight: str | None = None  # not computed yet: the index holds analysed text only


@dataclass(frozen=True)
class SearchResult:
    total: int
    hits: tuple[Hit, ...]
    facets: dict[str, dict[str, int]]  # facet name -> value -> count


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_unsigned_field("id_key", fast=True)
    for name in BOOSTS:  # no positions: queries are term queries, never phrases
        sb.add_text_field(name, tokenizer_name=_TOKENIZER, index_option="freq")
    for name in _KEYWORDS:  # fast: facets count them, filters match them
        sb.add_text_field(name, fast=True, tokenizer_name="raw", index_option="basic")
    sb.add_boolean_field("has_sample", indexed=True, fast=True)
    sb.add_unsigned_field("price", indexed=True, fast=True)
    sb.add_text_field("price_band", fast=True, tokenizer_name="raw", index_option="basic")
    # Merchants are counted by number: a u64 column counts thousands of distinct values
    # across segments several times faster than a text one.
    sb.add_unsigned_field("merchant_no", fast=True)
    for name in _SORT_FIELD.values():
        sb.add_text_field(name, fast=True, tokenizer_name="raw", index_option="basic")
    return sb.build()


def _name_words(name: str) -> str:
    """A field name and its parts (``reg_capital`` -> ``reg_capital reg capital``)."""
    parts = [p for p in _SPLIT_NAME.split(name) if p]
    return name if len(parts) < 2 else f"{name} {' '.join(parts)}"


def _sort_keys(doc: ListingFacts) -> dict[str, str]:
    """Each order's key: the sort value, fixed width or NUL-terminated, then the id."""
    listed_us = max(int(doc.listed_at.timestamp() * 1_000_000), 0)
    price = max(doc.min_price_fen, 0)
    title = unicodedata.normalize("NFKC", doc.title).casefold()[:200].replace("\x00", "")
    return {
        "sort_newest": f"{_U64_MAX - listed_us:020d}\x00{doc.id}",
        "sort_price_asc": f"{price:020d}\x00{doc.id}",
        "sort_price_desc": f"{_U64_MAX - price:020d}\x00{doc.id}",
        "sort_title": f"{title}\x00{doc.id}",
    }


def index_text(doc: ListingFacts) -> dict[str, str]:
    """The analysed text of each full-text field, as the index stores it."""
    # Field names are analysed apart from their meanings: Chinese meanings send the text
    # through jieba, which would cut ``credit_code`` differently from an English query.
    names = " ".join(_name_words(f.name) for f in doc.fields)
    meanings = " ".join(f.meaning for f in doc.fields)
    other = " ".join((doc.coverage, *doc.scenarios, doc.merchant_name, doc.category))
    return {
        "title": analyzed(doc.title),
        "tags": analyzed(" ".join(doc.tags)),
        "fields": f"{analyzed(names)} {analyzed(meanings)}",
        "description": analyzed(doc.summary),
        "other": analyzed(other),
    }


def _document(doc: ListingFacts, merchant_no: int) -> tantivy.Document:
    out = tantivy.Document(
        id=doc.id,
        kind=doc.kind,
        industry=doc.industry,
        category=doc.category,
        grade=doc.grade,
        update_frequency=doc.update_frequency,
        merchant=doc.org_id,
        has_sample=doc.has_sample,
        price_band=price_band(max(doc.min_price_fen, 0)),
        **index_text(doc),
        **_sort_keys(doc),
    )
    out.add_unsigned("id_key", _id_key(doc.id))  # keyword arguments would make them i64
    out.add_unsigned("price", max(doc.min_price_fen, 0))
    out.add_unsigned("merchant_no", merchant_no)
    return out


def price_band(price_fen: int) -> str:
    """The PRICE_BANDS key a price falls in."""
    for key, lo, hi in PRICE_BANDS:
        if (lo is None or price_fen >= lo) and (hi is None or price_fen < hi):
            return key
    raise ValueError(f"no price band holds {price_fen}")  # the bands cover 0 and up


def _check(q: SearchQuery) -> None:
    if q.sort not in SORTS:
        raise InvalidQuery(f"sort must be one of {', '.join(SORTS)}")
    if not 0 <= q.limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 0 and {MAX_LIMIT}")
    if not 0 <= q.offset <= MAX_OFFSET:
        raise InvalidQuery(f"offset must be between 0 and {MAX_OFFSET}")
    for bound in (q.price_min_fen, q.price_max_fen):
        if bound is not None and bound < 0:
            raise InvalidQuery("price bounds cannot be negative")


class CatalogIndex:
    """The searchable catalog. Thread-safe: writes are serialised, reads take a snapshot."""

    def __init__(self) -> None:
        self._schema = _schema()
        self._index = tantivy.Index(self._schema)
        self._index.register_tokenizer(
            _TOKENIZER, tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
        )
        self._lock = threading.Lock()
        # A budget, allocated as used: a 100,000-listing build fits one segment, and
        # facets count fastest over few segments.
        self._writer = self._index.writer(heap_size=256_000_000, num_threads=1)
        self._applied_seq = 0
        self._merchants: list[str] = []  # merchant_no -> org id
        self._merchant_no: dict[str, int] = {}
        self._names_lock = threading.Lock()

    # --- writes -------------------------------------------------------------------------

    @property
    def applied_seq(self) -> int:
        """The last ledger sequence number whose effect the caller applied to the index."""
        return self._applied_seq

    @applied_seq.setter
    def applied_seq(self, seq: int) -> None:
        self._applied_seq = seq

    def upsert(self, docs: Iterable[ListingFacts]) -> None:
        """Add or replace products by id, visible to the next search (one commit per call)."""
        prepared = [(d.id, self._prepare(d)) for d in docs]  # analyse outside the lock
        if prepared:
            self._write(prepared, ())

    def remove(self, ids: Iterable[str]) -> None:
        """Remove products by id (unknown ids are ignored), gone from the next search."""
        gone = list(ids)
        if gone:
            self._write((), gone)

    def replace_all(self, docs: Iterable[ListingFacts]) -> None:
        """Rebuild from scratch in one commit: searches see the old or the new catalog."""
        prepared = [(d.id, self._prepare(d)) for d in docs]
        self._write(prepared, (), clear=True)

    def _prepare(self, doc: ListingFacts) -> tantivy.Document:
        number = self._merchant_no.get(doc.org_id)
        if number is None:
            with self._names_lock:  # numbers are never reused, so old snapshots stay right
                number = self._merchant_no.setdefault(doc.org_id, len(self._merchants))
                if number == len(self._merchants):
                    self._merchants.append(doc.org_id)
        return _document(doc, number)

    def _write(
        self,
        docs: Sequence[tuple[str, tantivy.Document]],
        removed: Sequence[str],
        clear: bool = False,
    ) -> None:
        with self._lock:
            try:
                if clear:
                    self._writer.delete_all_documents()
                for doc_id in removed:
                    self._writer.delete_documents_by_term("id", doc_id)
                for doc_id, doc in docs:
                    self._writer.delete_documents_by_term("id", doc_id)
                    self._writer.add_document(doc)
                self._writer.commit()
            except BaseException:
                self._writer.rollback()
                raise
            self._index.reload()

    # --- reads --------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._index.searcher().num_docs)

    def search(self, q: SearchQuery) -> SearchResult:
        """Matching products in the requested order, with the total and facet counts."""
        _check(q)
        searcher = self._index.searcher()  # one snapshot for hits, total and facets
        terms = list(dict.fromkeys(analyze(q.text[:MAX_TEXT])))[:MAX_TERMS]
        text: Query | None = None
        if terms:
            text = self._text_query(terms)
        elif q.text.strip():  # only stopwords or punctuation: nothing matches
            text = Query.empty_query()
        query = self._combine(text, self._filters(q))
        sort = q.sort if text is not None or q.sort != "relevance" else "newest"
        if sort == "relevance":
            total, hits = self._by_score(searcher, query, q.offset, q.limit)
        else:
            total, hits = self._by_key(searcher, query, _SORT_FIELD[sort], q.offset, q.limit)
        # Counted even when nothing matches: without its own filter a dimension may.
        facets = self._facets(searcher, text, q) if q.facets else {}
        return SearchResult(total, hits, facets)

    def _text_query(self, terms: list[str]) -> Query:
        clauses = [
            (Occur.Should, Query.boost_query(Query.term_query(self._schema, field, t), boost))
            for t in terms
            for field, boost in BOOSTS.items()
        ]
        return Query.boolean_query(clauses)

    def _filters(self, q: SearchQuery, without: str | None = None) -> list[Query]:
        """Filter clauses, but for dimension ``without``; constant score 0, so they never
        move the ranking."""
        out: list[Query] = []
        for field, attr in _KEYWORDS.items():
            values = getattr(q, attr)
            if values and field != without:
                out.append(Query.term_set_query(self._schema, field, list(values)))
        if q.has_sample is not None and without != "has_sample":
            out.append(Query.term_query(self._schema, "has_sample", q.has_sample))
        if _priced(q) and without != "price_band":
            out.append(
                Query.range_query(
                    self._schema, "price", FieldType.Unsigned, q.price_min_fen, q.price_max_fen
                )
            )
        return [Query.const_score_query(f, 0.0) for f in out]

    @staticmethod
    def _combine(text: Query | None, filters: list[Query]) -> Query:
        if not filters:
            return text if text is not None else Query.all_query()
        clauses = [(Occur.Must, f) for f in filters]
        if text is not None:
            clauses.append((Occur.Must, text))
        return Query.boolean_query(clauses)

    @staticmethod
    def _by_score(
        searcher: tantivy.Searcher, query: Query, offset: int, limit: int
    ) -> tuple[int, tuple[Hit, ...]]:
        """Top hits by score, equal scores ordered by id.

        Tantivy orders equal scores by internal address, which merges change, so the fetch
        grows until it holds every hit tied with the page's last one; the page is then cut
        from the fetched hits sorted by (score desc, id).
        """
        end = offset + limit
        fetch = 2 * end + 64  # slack: a wider first fetch costs little, a second search more
        while True:
            res = searcher.search(query, limit=fetch, count=True)
            found = res.hits
            if limit == 0 or len(found) < fetch or found[-1][0] < found[end - 1][0]:
                break
            fetch *= 8  # the last fetched hit ties the page's last: there may be more
        if limit == 0 or len(found) <= offset:
            return _total(res), ()
        top, bottom = found[offset][0], found[min(end, len(found)) - 1][0]
        before = sum(1 for score, _ in found if score > top)
        tied = [(score, addr) for score, addr in found if bottom <= score <= top]
        page = _id_order(searcher, tied, offset - before, limit)
        return _total(res), tuple(Hit(doc_id, score) for score, doc_id in page)

    @staticmethod
    def _by_key(
        searcher: tantivy.Searcher, query: Query, field: str, offset: int, limit: int
    ) -> tuple[int, tuple[Hit, ...]]:
        res = searcher.search(
            query,
            limit=max(limit, 1),
            offset=offset,
            count=True,
            order_by_field=field,
            order=Order.Asc,
        )
        hits = () if limit == 0 else tuple(Hit(k.rpartition("\x00")[2], 0.0) for k, _ in res.hits)
        return _total(res), hits

    def _facets(
        self, searcher: tantivy.Searcher, text: Query | None, q: SearchQuery
    ) -> dict[str, dict[str, int]]:
        """Counts per facet; a filtered dimension is counted without its own filter."""
        filtered = [
            name
            for name in FACETS
            if (name == "has_sample" and q.has_sample is not None)
            or (name == "price_band" and _priced(q))
            or (name in _KEYWORDS and getattr(q, _KEYWORDS[name]))
        ]
        plain = {name: _agg(name) for name in FACETS if name not in filtered}
        runs: list[tuple[Query, dict[str, Any]]] = []
        if plain:
            runs.append((self._combine(text, self._filters(q)), plain))
        for name in filtered:
            query = self._combine(text, self._filters(q, without=name))
            runs.append((query, {name: _agg(name)}))
        counts: dict[str, dict[str, int]] = {}
        for query, aggs in runs:
            result = searcher.aggregate(query, aggs)
            for name in aggs:
                counts[name] = _buckets(name, result.get(name, {"buckets": []}), self._merchants)
        return {name: counts[name] for name in FACETS}


def _priced(q: SearchQuery) -> bool:
    return q.price_min_fen is not None or q.price_max_fen is not None


def _total(res: tantivy.SearchResult) -> int:
    return int(res.count)  # type: ignore[attr-defined]  # missing from tantivy's stub


def _stored_id(searcher: tantivy.Searcher, addr: tantivy.DocAddress) -> str:
    return str(searcher.doc(addr).get_first("id"))


def _id_key(doc_id: str) -> int:
    """A u64 that orders like the id's first 8 bytes: ties in score sorted without reading
    the stored documents."""
    return int.from_bytes(doc_id.encode()[:8].ljust(8, b"\0"), "big")


def _id_order(
    searcher: tantivy.Searcher, hits: list[tuple[float, tantivy.DocAddress]], start: int, limit: int
) -> list[tuple[float, str]]:
    """``hits[start:start + limit]`` once ordered by (score desc, id), reading few ids.

    Sorting on the 8-byte id key orders every hit but those sharing score and key; the
    page is widened over such runs at its edges, and only the widened page's ids are read.
    """
    keys = searcher.fast_field_values("id_key", [addr for _, addr in hits])
    ranked = sorted(
        ((-score, key, addr) for (score, addr), key in zip(hits, keys, strict=True)),
        key=lambda h: (h[0], h[1]),
    )
    lo, hi = start, min(start + limit, len(ranked))
    while lo > 0 and ranked[lo - 1][:2] == ranked[lo][:2]:
        lo -= 1
    while hi < len(ranked) and ranked[hi][:2] == ranked[hi - 1][:2]:
        hi += 1
    window = sorted((neg, _stored_id(searcher, addr)) for neg, _, addr in ranked[lo:hi])
    return [(-neg, doc_id) for neg, doc_id in window[start - lo : start - lo + limit]]


def _agg(name: str) -> dict[str, Any]:
    # A price band is stored per document: a terms count is cheaper than a range one.
    # segment_size above any segment's distinct values keeps the counts exact (tantivy
    # would otherwise merge each segment's top values only).
    field = "merchant_no" if name == "merchant" else name
    return {"terms": {"field": field, "size": FACET_SIZE, "segment_size": 65_536}}


def _buckets(name: str, result: dict[str, Any], merchants: list[str]) -> dict[str, int]:
    """Value -> count, largest first (ties by value); every price band, even empty."""
    counts: dict[str, int] = {}
    for b in result["buckets"]:
        key = merchants[b["key"]] if name == "merchant" else str(b.get("key_as_string", b["key"]))
        counts[key] = int(b["doc_count"])
    if name == "price_band":
        return {key: counts.get(key, 0) for key, _, _ in PRICE_BANDS}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
