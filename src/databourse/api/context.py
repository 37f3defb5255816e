"""What every request handler can reach: settings, the database and key material."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session, sessionmaker

from databourse.assets.store import ObjectStore
from databourse.auth.services import TokenConfig
from databourse.catalog.indexer import CatalogSearch
from databourse.db import Database
from databourse.keys import load_secret, load_signing_key
from databourse.ledger.services import LogKey
from databourse.settings import Settings


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
        return cls(
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
