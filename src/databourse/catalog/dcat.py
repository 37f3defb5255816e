"""The catalog as W3C DCAT 3 JSON-LD, shaped after DCAT-AP 3 (brief §12).

Other catalogs and data portals harvest DCAT, so this is how listings leave the exchange as
metadata. The document carries its whole ``@context`` inline: contexts fetched by URL need a
network, and a harvester (or a test) may have none. Dataset products become
``dcat:Dataset`` with one ``dcat:Distribution`` per file version; API and compute products
become ``dcat:DataService`` with an endpoint on the exchange's gateway or compute service,
since buyers reach them there and never at the merchant. DCAT has no price, so prices are
in the DataBourse namespace ``dbx:``. ``shapes/dcat.ttl`` holds the SHACL shapes the output
must satisfy. Pure: no I/O, no clock.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from databourse.catalog.facts import DistributionFacts, FieldFacts, ListingFacts

DBX = "https://databourse.org/ns/catalog#"
ODRL = "http://www.w3.org/ns/odrl/2/"
EU_AUTHORITY = "http://publications.europa.eu/resource/authority/"
IANA_MEDIA_TYPES = "https://www.iana.org/assignments/media-types/"

CONTEXT: dict[str, str] = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "odrl": ODRL,
    "adms": "http://www.w3.org/ns/adms#",
    "spdx": "http://spdx.org/rdf/terms#",
    "dcatap": "http://data.europa.eu/r5r/",
    "dbx": DBX,
}

# Stands in for the remote ODRL 2.2 context (http://www.w3.org/ns/odrl.jsonld) on a nested
# policy: its compact terms ("permission", "action": "use", "leftOperand": "purpose") resolve
# in the ODRL namespace, and the terms whose values name things are coerced to IRIs.
ODRL_CONTEXT: dict[str, Any] = {
    "@vocab": ODRL,
    "uid": "@id",
    "type": "@type",
    **{
        term: {"@type": "@vocab"}
        for term in ("action", "leftOperand", "operator", "conflict", "status")
    },
    **{
        term: {"@type": "@id"}
        for term in (
            "target",
            "assigner",
            "assignee",
            "profile",
            "inheritFrom",
            "dataType",
            "unit",
            "partOf",
            "rightOperandReference",
        )
    },
    "andSequence": {"@container": "@list"},
}
ODRL_CONTEXT_URLS = frozenset(
    {"http://www.w3.org/ns/odrl.jsonld", "https://www.w3.org/ns/odrl.jsonld"}
)

# update_frequency → EU Frequency authority table (DCAT-AP's vocabulary for
# dct:accrualPeriodicity), http://publications.europa.eu/resource/authority/frequency
FREQUENCIES: dict[str, str] = {
    "realtime": "UPDATE_CONT",
    "continuous": "UPDATE_CONT",
    "hourly": "HOURLY",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "semiannual": "ANNUAL_2",
    "annual": "ANNUAL",
    "yearly": "ANNUAL",
    "irregular": "IRREG",
    "once": "NEVER",
    "never": "NEVER",
    "unknown": "UNKNOWN",
}

# industry → EU Data Theme authority table (DCAT-AP's vocabulary for dcat:theme), where the
# correspondence is plain; every industry is also a concept under the exchange's own scheme.
DATA_THEMES: dict[str, str] = {
    "agriculture": "AGRI",
    "finance": "ECON",
    "economy": "ECON",
    "commerce": "ECON",
    "education": "EDUC",
    "energy": "ENER",
    "environment": "ENVI",
    "government": "GOVE",
    "health": "HEAL",
    "healthcare": "HEAL",
    "justice": "JUST",
    "science": "TECH",
    "technology": "TECH",
    "telecom": "TECH",
    "transport": "TRAN",
    "logistics": "TRAN",
}

# format → EU File Type authority table (DCAT-AP's vocabulary for dct:format).
FILE_TYPES: dict[str, str] = {"csv": "CSV", "parquet": "PARQUET", "json": "JSON", "xlsx": "XLSX"}

# ISO 639-1 code → EU Language authority table (DCAT-AP's vocabulary for dct:language).
LANGUAGES: dict[str, str] = {"zh": "ZHO", "en": "ENG"}

# Currencies whose minor unit is not 1/100 (ISO 4217); prices arrive in minor units.
_MINOR_DIGITS: dict[str, int] = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "OMR": 3}

KINDS = ("dataset", "api", "compute")


@dataclass(frozen=True)
class CatalogMeta:
    """What the exchange says about its own catalog; title and description by language."""

    name: str  # short identifier, e.g. "databourse"
    title: Mapping[str, str]  # language tag → title, e.g. {"zh": "…", "en": "…"}
    description: Mapping[str, str]
    publisher_name: str
    homepage: str
    issued: datetime
    modified: datetime
    languages: tuple[str, ...] = ("zh", "en")
    publisher_iri: str | None = None  # defaults to the homepage's "#exchange"

    def __post_init__(self) -> None:
        if not any(v.strip() for v in self.title.values()):
            raise ValueError("a catalog needs a title")
        if not any(v.strip() for v in self.description.values()):
            raise ValueError("a catalog needs a description")


def shapes_file() -> Traversable:
    """The SHACL shapes (Turtle) an export must conform to."""
    return files("databourse.catalog") / "shapes" / "dcat.ttl"


def product_page(base_url: str, product_id: str) -> str:
    """The public page of a product: DCAT landing page and distribution access URL."""
    return f"{base_url.rstrip('/')}/products/{product_id}"


def endpoint_url(base_url: str, listing: ListingFacts) -> str:
    """Where buyers call an API or compute product: always through the exchange."""
    path = "gateway" if listing.kind == "api" else "compute"
    return f"{base_url.rstrip('/')}/{path}/{listing.id}"


def to_dcat(
    catalog: CatalogMeta,
    listings: Sequence[ListingFacts],
    base_url: str,
    policies: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The catalog and its listings as one JSON-LD document (a ``dcat:Catalog`` node).

    ``policies`` maps a listing id to its ODRL policy (JSON-LD); it is nested under
    ``odrl:hasPolicy``. Listings appear sorted by id, so equal input gives equal output.
    """
    base = base_url.rstrip("/")
    policies = policies or {}
    unknown = sorted({x.kind for x in listings} - set(KINDS))
    if unknown:
        raise ValueError(f"unknown product kind(s): {', '.join(unknown)}")
    ordered = sorted(listings, key=lambda x: x.id)
    publisher_iri = catalog.publisher_iri or f"{catalog.homepage.rstrip('/')}#exchange"
    doc: dict[str, Any] = {
        "@context": dict(CONTEXT),
        "@id": f"{base}/catalog",
        "@type": "dcat:Catalog",
        "dct:identifier": catalog.name,
        "dct:title": _texts(catalog.title),
        "dct:description": _texts(catalog.description),
        "dct:publisher": _agent(publisher_iri, catalog.publisher_name),
        "foaf:homepage": {"@id": catalog.homepage},
        "dct:issued": _datetime(catalog.issued),
        "dct:modified": _datetime(catalog.modified),
        "dct:language": [_language(code) for code in catalog.languages],
        "dcat:themeTaxonomy": [
            {"@id": f"{base}/vocab/industry"},
            {"@id": f"{EU_AUTHORITY}data-theme"},
        ],
        "dcat:dataset": [
            _dataset(x, base, policies.get(x.id)) for x in ordered if x.kind == "dataset"
        ],
        "dcat:service": [
            _service(x, base, policies.get(x.id)) for x in ordered if x.kind != "dataset"
        ],
    }
    return doc


def _resource(listing: ListingFacts, base: str, policy: dict[str, Any] | None) -> dict[str, Any]:
    """What a Dataset and a DataService both say (the dcat:Resource part)."""
    lang = listing.language
    page = product_page(base, listing.id)
    node: dict[str, Any] = {
        "@id": f"{base}/products/{listing.id}",
        "dct:identifier": listing.id,
        "dct:title": _text(listing.title, lang),
        "dct:description": _text(_description(listing), lang),
        "dcat:keyword": [_text(tag, lang) for tag in listing.tags],
        "dcat:theme": _themes(listing.industry, base),
        "dct:publisher": _agent(f"{base}/organisations/{listing.org_id}", listing.merchant_name),
        "dcat:contactPoint": {
            "@type": "vcard:Organization",
            "vcard:fn": listing.merchant_name,
            "vcard:hasURL": {"@id": f"{base}/organisations/{listing.org_id}"},
        },
        "dcat:landingPage": {"@id": page, "@type": "foaf:Document"},
        "dct:language": _language(lang),
        "dct:issued": _datetime(listing.listed_at),
        "dct:modified": _datetime(listing.updated_at),
        "dbx:kind": listing.kind,
        "dbx:grade": listing.grade,
        "dbx:minPrice": _money(listing.min_price_fen, listing.currency),
        "dbx:maxPrice": _money(listing.max_price_fen, listing.currency),
        "dbx:currency": listing.currency,
        "dbx:pricingModel": list(listing.plan_models),
        "dbx:hasSample": listing.has_sample,
    }
    if listing.coverage.strip():
        # One free text for time span and geography together: dct:coverage takes it as it
        # is, where dct:temporal / dct:spatial would need a PeriodOfTime / Location node.
        node["dct:coverage"] = _text(listing.coverage, lang)
    if listing.restrictions.strip():
        node["dbx:restrictions"] = _text(listing.restrictions, lang)
    if listing.scenarios:
        node["dbx:scenario"] = [_text(s, lang) for s in listing.scenarios]
    if listing.quality_score is not None:
        node["dbx:qualityScore"] = {"@value": f"{listing.quality_score:g}", "@type": "xsd:decimal"}
    if listing.fields:
        node["dbx:field"] = {"@list": [_field(f, lang) for f in listing.fields]}
    if policy is not None:
        node["odrl:hasPolicy"] = _policy(policy)
    return node


def _dataset(listing: ListingFacts, base: str, policy: dict[str, Any] | None) -> dict[str, Any]:
    node = {"@type": "dcat:Dataset", **_resource(listing, base, policy)}
    frequency = FREQUENCIES.get(listing.update_frequency.strip().lower())
    if frequency:
        node["dct:accrualPeriodicity"] = {"@id": f"{EU_AUTHORITY}frequency/{frequency}"}
    versions = sorted(listing.distributions, key=lambda d: (-d.version, d.file_id))
    node["dcat:distribution"] = [_distribution(d, listing, base) for d in versions]
    return node


def _distribution(dist: DistributionFacts, listing: ListingFacts, base: str) -> dict[str, Any]:
    """One file version. Access goes through the product page: downloads need a contract."""
    node: dict[str, Any] = {
        "@id": f"{base}/products/{listing.id}/files/{dist.file_id}",
        "@type": "dcat:Distribution",
        "dct:title": _text(f"{listing.title} v{dist.version} ({dist.format})", listing.language),
        "dcat:accessURL": {"@id": product_page(base, listing.id)},
        "dcat:byteSize": {"@value": str(dist.byte_size), "@type": "xsd:nonNegativeInteger"},
        "spdx:checksum": {
            "@type": "spdx:Checksum",
            "spdx:algorithm": {"@id": "spdx:checksumAlgorithm_sha256"},
            "spdx:checksumValue": {"@value": dist.sha256.lower(), "@type": "xsd:hexBinary"},
        },
        "dct:issued": _datetime(dist.created_at),
        "dbx:version": dist.version,
        "dbx:rowCount": {"@value": str(dist.row_count), "@type": "xsd:nonNegativeInteger"},
    }
    if dist.media_type.strip():
        node["dcat:mediaType"] = {"@id": f"{IANA_MEDIA_TYPES}{dist.media_type.strip().lower()}"}
    file_type = FILE_TYPES.get(dist.format.lower())
    if file_type:
        node["dct:format"] = {"@id": f"{EU_AUTHORITY}file-type/{file_type}"}
    return node


def _service(listing: ListingFacts, base: str, policy: dict[str, Any] | None) -> dict[str, Any]:
    """An API or compute product: the exchange's endpoint, described on the product page."""
    node = {"@type": "dcat:DataService", **_resource(listing, base, policy)}
    node["dcat:endpointURL"] = {"@id": endpoint_url(base, listing)}
    node["dcat:endpointDescription"] = {"@id": product_page(base, listing.id)}
    return node


def _description(listing: ListingFacts) -> str:
    """The summary; a dataset without one is still described by its fields."""
    if listing.summary.strip():
        return listing.summary
    names = ", ".join(f.name for f in listing.fields)
    return f"{listing.title} ({names})" if names else listing.title


def _field(f: FieldFacts, lang: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@type": "dbx:Field",
        "dbx:name": f.name,
        "dbx:datatype": f.type,
        "dbx:personal": f.personal,
    }
    if f.meaning.strip():
        node["dct:description"] = _text(f.meaning, lang)
    return node


def _policy(policy: dict[str, Any]) -> dict[str, Any]:
    """An ODRL policy nested in place, its remote context replaced by the local ODRL terms.

    A context URL cannot be kept (it would be fetched); its terms must still resolve, or a
    JSON-LD processor silently drops them. Inline parts of the policy's context are kept.
    """
    node = copy.deepcopy(policy)
    original = node.pop("@context", None)
    parts = original if isinstance(original, list) else [original]
    context: dict[str, Any] = dict(ODRL_CONTEXT)
    for part in parts:
        if part is None or (isinstance(part, str) and part in ODRL_CONTEXT_URLS):
            continue
        if isinstance(part, dict):
            context.update(part)
            continue
        raise ValueError(f"cannot embed the remote JSON-LD context {part!r} offline")
    return {"@context": context, **node}


def _themes(industry: str, base: str) -> list[dict[str, Any]]:
    if not industry.strip():
        return []
    key = industry.strip().lower()
    themes: list[dict[str, Any]] = [
        {
            "@id": f"{base}/vocab/industry/{key}",
            "@type": "skos:Concept",
            "skos:prefLabel": industry,
            "skos:inScheme": {"@id": f"{base}/vocab/industry"},
        }
    ]
    if key in DATA_THEMES:
        themes.append({"@id": f"{EU_AUTHORITY}data-theme/{DATA_THEMES[key]}"})
    return themes


def _agent(iri: str, name: str) -> dict[str, Any]:
    return {"@id": iri, "@type": "foaf:Agent", "foaf:name": name}


def _language(code: str) -> dict[str, str]:
    """EU Language table for the languages it maps here, else the ISO 639-1 registry."""
    if code in LANGUAGES:
        return {"@id": f"{EU_AUTHORITY}language/{LANGUAGES[code]}"}
    return {"@id": f"http://id.loc.gov/vocabulary/iso639-1/{code.lower()}"}


def _text(value: str, lang: str) -> dict[str, str]:
    return {"@value": value, "@language": lang}


def _texts(by_language: Mapping[str, str]) -> list[dict[str, str]]:
    return [_text(v, lang) for lang, v in sorted(by_language.items()) if v.strip()]


def _datetime(value: datetime) -> dict[str, str]:
    return {"@value": value.isoformat(), "@type": "xsd:dateTime"}


def _money(minor: int, currency: str) -> dict[str, str]:
    amount = Decimal(minor).scaleb(-_MINOR_DIGITS.get(currency.upper(), 2))
    return {"@value": f"{amount:f}", "@type": "xsd:decimal"}
