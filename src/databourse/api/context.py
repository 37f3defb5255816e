"""What every request handler can reach: settings, the database and key material."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session, sessionmaker

from databourse.assets.store import ObjectStore
from databourse.auth.services import TokenConfig
from databourse.catalog.indexer import CatalogSearch
from databourse.db import Database
from databourse.delivery.meter import Meter
from databourse.keys import load_secret, load_signing_key
from databourse.ledger.services import LogKey
from databourse.settings import Settings
from databourse.settlement import usage
from databourse.settlement.usage import DatabaseUsageSink

#: Each delivery path's meter. Downloads and Delta Sharing serve the same copies through
#: the same links and share one meter ("files"), so a row limit counts both at once.
DELIVERY_PATHS = {"gateway": "gateway", "download": "files", "share": "files"}


@dataclass
class AppContext:
    settings: Settings
    db: Database
    writes: sessionmaker[Session]
    reads: sessionmaker[Session]
    tokens: TokenConfig
    signing_key: Ed25519PrivateKey
    log_key: LogKey
    store: ObjectStore
    catalog: CatalogSearch
    custody_secret: bytes
    meters: dict[str, Meter] = field(default_factory=dict)
    compute: Any = None  # compute.exchange.ComputeState: node key, embedded node, job runner

    def meter(self, path: str) -> Meter:
        """The usage meter of a delivery path ("gateway", "download", "share")."""
        return self.meters[path]

    @classmethod
    def build(cls, settings: Settings) -> AppContext:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database.connect(settings.database)
        tokens = TokenConfig(
            secret=load_secret(settings.token_secret_file),
            access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
            session_ttl=timedelta(seconds=settings.session_ttl_seconds),
        )
        signing_key = load_signing_key(settings.signing_key_file)
        ctx = cls(
            settings,
            db,
            db.write_sessions(),
            db.read_sessions(),
            tokens,
            signing_key,
            LogKey.from_private_key(signing_key, settings.ledger_origin),
            ObjectStore(settings.object_store),
            CatalogSearch(),
            load_secret(settings.custody_secret_file),
        )
        sink = DatabaseUsageSink(ctx.writes)

        def used_in_store(contract_id: str, metric: str) -> int:
            with ctx.reads() as session:
                return usage.total(session, contract_id, metric)

        made: dict[str, Meter] = {}
        for path, source in DELIVERY_PATHS.items():
            if source not in made:
                made[source] = Meter(
                    sink,
                    source,
                    used_in_store,
                    flush_seconds=settings.meter_flush_seconds,
                    max_pending=settings.meter_max_pending,
                )
            ctx.meters[path] = made[source]
        from databourse.compute.exchange import ComputeState

        ctx.compute = ComputeState(ctx)
        return ctx

    def distinct_meters(self) -> list[Meter]:
        """Each meter once (paths may share one)."""
        return list({id(m): m for m in self.meters.values()}.values())
