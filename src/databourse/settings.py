"""Configuration from the environment (prefix ``DATABOURSE_``).

Every rule with a number in it (token lifetimes, body limits) is a setting with the
brief's value as its default, because rules change.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATABOURSE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        Path("var"), description="Where the embedded store, keys and files live."
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default is a SQLite file in data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    signing_key_path: Path | None = Field(
        None, description="The exchange's Ed25519 signing key; generated on first start."
    )
    token_secret_path: Path | None = Field(
        None, description="Secret for bearer tokens; shared by all processes of one exchange."
    )
    exchange_name: str = "databourse.local"
    public_url: str = Field(
        "http://127.0.0.1:8000",
        description="The exchange's public base URL: DCAT and ODRL IRIs, share profiles, demo.",
    )
    access_token_ttl_seconds: int = 900
    session_ttl_seconds: int = 7 * 24 * 3600
    session_cookie_secure: bool = False
    max_body_bytes: int = 1_000_000
    idempotency_ttl_hours: int = 24
    log_level: str = "INFO"
    ledger_public_read: bool = Field(
        True, description="Checkpoints and proofs readable without credentials (monitors)."
    )
    checkpoint_interval_seconds: int = Field(
        60, description="How often a new checkpoint is signed when the log has grown; 0: never."
    )
    object_store_url: str | None = Field(
        None,
        description="fsspec URL of the object store for data files (e.g. s3://bucket/prefix); "
        "default is a directory in data_dir.",
    )
    upload_max_bytes: int = Field(512 * 1024 * 1024, description="Largest data file accepted.")
    upload_max_decoded_bytes: int = Field(
        4 * 1024 * 1024 * 1024,
        description="Largest size a file may expand to when decoded (Parquet decompression).",
    )
    upload_max_columns: int = 1000
    commitment_chunk_rows: int = Field(
        1024, description="Rows per chunk of a data file's Merkle content commitment."
    )
    sample_rows: int = Field(5, description="Rows shown in a product's sample.")
    general_sub_grades: int = Field(
        4, description="Sub-grades of general data (GB/T 43697-2024 leaves the scale open)."
    )
    custody_secret_path: Path | None = Field(
        None,
        description="Secret sealing the custodial contract-signing keys held for organisations.",
    )
    offer_ttl_hours: int = Field(72, description="How long an offer stands unless it says.")
    sign_within_days: int = Field(7, description="Days both parties have to sign a contract.")
    acceptance_days: int = Field(
        7, description="Days a buyer has to accept or dispute a delivery before release."
    )
    billing_period_days: int = Field(30, description="Length of a metered billing period.")
    invoice_due_days: int = Field(15, description="Days from an invoice to its due date.")
    auction_reveal_hours: int = Field(48, description="Time bidders have to reveal their bids.")
    bank_account: str = Field(
        "DataBourse Exchange client money account (configure DATABOURSE_BANK_ACCOUNT)",
        description="The client-money bank account buyers pay deposits into.",
    )
    meter_flush_seconds: float = Field(
        1.0, gt=0, description="Seconds between writes of buffered usage records (metering)."
    )
    meter_max_pending: int = Field(
        1000, gt=0, description="Buffered usage records that trigger an early write."
    )
    gateway_timeout_ms: int = Field(
        10_000, gt=0, description="Default time an API upstream has to answer the gateway."
    )
    gateway_max_response_bytes: int = Field(
        16 << 20, gt=0, description="Largest upstream response the gateway relays."
    )
    download_link_minutes: int = Field(15, gt=0, description="Lifetime of a download link.")
    share_link_minutes: int = Field(
        60, gt=0, description="Lifetime of a Delta Sharing pre-signed file URL."
    )
    demo_upstream: bool = Field(
        False, description="Serve the demo merchant's API at /demo/upstream (demo only)."
    )
    demo_nodes: bool = Field(
        False,
        description="Serve the demo world's two compute nodes at /demo/nodes/<name> (demo only).",
    )
    demo_password: SecretStr = SecretStr("demo-password-2026")

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'databourse.sqlite3').as_posix()}"

    @property
    def ledger_origin(self) -> str:
        """The log's name in checkpoints (C2SP tlog-checkpoint origin) and its key name."""
        return f"{self.exchange_name}/ledger"

    @property
    def object_store(self) -> str:
        return self.object_store_url or (self.data_dir / "objects").resolve().as_uri()

    @property
    def signing_key_file(self) -> Path:
        return self.signing_key_path or self.data_dir / "keys" / "exchange-ed25519.key"

    @property
    def token_secret_file(self) -> Path:
        return self.token_secret_path or self.data_dir / "keys" / "token-secret"

    @property
    def custody_secret_file(self) -> Path:
        return self.custody_secret_path or self.data_dir / "keys" / "custody-secret"


@lru_cache
def get_settings() -> Settings:
    return Settings()
