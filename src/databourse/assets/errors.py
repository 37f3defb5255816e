"""Errors of the assets domain (registration and data files), each a stable problem type."""

from __future__ import annotations

from databourse.errors import Conflict, DataBourseError, ValidationFailed


class CoreDataRefused(ValidationFailed):
    slug = "core-data-refused"
    title = "Core data (核心数据) can never be registered for trading"


class SourceDeclarationIncomplete(ValidationFailed):
    slug = "source-declaration-incomplete"
    title = "The source declaration lacks what its kind requires"


class RightsIncomplete(ValidationFailed):
    slug = "rights-incomplete"
    title = "The asset's rights do not support what was asked"


class AssetFrozen(Conflict):
    slug = "asset-frozen"
    title = "The asset is disputed or cancelled and may not be used"


class AssetInUse(Conflict):
    slug = "asset-in-use"
    title = "The asset backs a product that is listed or in review"


class FileTooLarge(DataBourseError):
    slug = "file-too-large"
    status = 413
    title = "The file is larger than the exchange accepts"


class MalformedFile(ValidationFailed):
    slug = "malformed-file"
    title = "The file is not a well-formed CSV or Parquet file"


class UnsupportedEncoding(ValidationFailed):
    slug = "unsupported-encoding"
    title = "The file's text encoding is neither UTF-8 nor GBK/GB18030"


class DecompressionBomb(ValidationFailed):
    slug = "decompression-bomb"
    title = "The file expands beyond the exchange's limits when decoded"


class SchemaDrift(Conflict):
    slug = "schema-drift"
    title = "The new version's schema differs from the previous version's"


class UnsupportedFormat(ValidationFailed):
    slug = "unsupported-format"
    title = "Only CSV and Parquet files are accepted"
