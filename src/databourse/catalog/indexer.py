"""Keeps a process's in-memory search index consistent with the database.

The index is a cache: it is built from the database on first use and then follows the
ledger. Every change that can alter what buyers see (a product's listing state, its
merchant's admission, an asset's dispute) is a ledger entry; before answering, a search
applies the entries committed since the last one it saw. Entries are appended under one
lock, so sequence numbers commit in order and a watermark never skips one. Each process
behind a load balancer keeps its own index this way; none has to be told.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from databourse.catalog import services
from databourse.catalog.facts import ListingFacts
from databourse.catalog.models import Product, ProductAsset, ProductStatus
from databourse.catalog.search import CatalogIndex, SearchQuery, SearchResult
from databourse.ledger.models import LedgerEntry

BATCH = 1000


class CatalogSearch:
    def __init__(self) -> None:
        self.index = CatalogIndex()
        self.facts: dict[str, ListingFacts] = {}
        self.watermark: int | None = None  # last ledger seq applied; None: not built
        self._lock = threading.Lock()

    def refresh(self, session: Session) -> None:
        """Apply what the ledger recorded since the last refresh (build on first use)."""
        with self._lock:
            if self.watermark is None:
                self._build(session)
            else:
                self._catch_up(session)

    def search(self, session: Session, query: SearchQuery) -> SearchResult:
        self.refresh(session)
        return self.index.search(query)

    def rebuild(self, session: Session) -> int:
        with self._lock:
            self.index = CatalogIndex()
            self.facts = {}
            self._build(session)
            return len(self.facts)

    def _build(self, session: Session) -> None:
        # The watermark is read first: a change committed after it is applied again by the
        # next catch-up, which is harmless (upserts are idempotent); the other order could
        # miss one.
        mark: int | None = session.scalar(select(func.max(LedgerEntry.seq)))
        ids = list(
            session.scalars(
                select(Product.id)
                .where(Product.status == ProductStatus.listed)
                .order_by(Product.id)
            )
        )
        shown: list[ListingFacts] = []
        for start in range(0, len(ids), BATCH):
            facts = services.listing_facts(session, ids[start : start + BATCH])
            shown.extend(f for f in facts.values() if f is not None)
        self.index.replace_all(shown)  # one commit, one segment: cheaper facets than batches
        self.facts = {f.id: f for f in shown}
        self.watermark = -1 if mark is None else int(mark)

    def _catch_up(self, session: Session) -> None:
        rows = session.execute(
            select(LedgerEntry.seq, LedgerEntry.kind, LedgerEntry.subject)
            .where(
                LedgerEntry.seq > self.watermark,
                or_(
                    LedgerEntry.kind.like("product.%"),
                    LedgerEntry.kind.like("org.%"),
                    LedgerEntry.kind.like("asset.%"),
                ),
            )
            .order_by(LedgerEntry.seq)
        ).all()
        if not rows:
            return
        products: set[str] = set()
        orgs: set[str] = set()
        asset_ids: set[str] = set()
        for _, kind, subject in rows:
            if kind.startswith("product."):
                products.add(subject)
            elif kind.startswith("org."):
                orgs.add(subject)
            else:
                asset_ids.add(subject)
        if orgs:
            products.update(session.scalars(select(Product.id).where(Product.org_id.in_(orgs))))
        if asset_ids:
            products.update(
                session.scalars(
                    select(ProductAsset.product_id).where(ProductAsset.asset_id.in_(asset_ids))
                )
            )
        ordered = sorted(products)
        for start in range(0, len(ordered), BATCH):
            self._apply(session, ordered[start : start + BATCH])
        self.watermark = max(int(r[0]) for r in rows)

    def _apply(self, session: Session, product_ids: Iterable[str]) -> None:
        facts = services.listing_facts(session, list(product_ids))
        shown = [f for f in facts.values() if f is not None]
        hidden = [pid for pid, f in facts.items() if f is None and pid in self.facts]
        if shown:
            self.index.upsert(shown)
            self.facts.update((f.id, f) for f in shown)
        if hidden:
            self.index.remove(hidden)
            for pid in hidden:
                self.facts.pop(pid, None)
