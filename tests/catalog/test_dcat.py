"""DCAT 3 JSON-LD export: loads as RDF, conforms to our DCAT-AP-modelled shapes, and the
shapes reject broken documents."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyshacl
import pytest
from rdflib import Graph, URIRef
from rdflib.namespace import SH

from databourse.catalog.dcat import CatalogMeta, shapes_file, to_dcat
from databourse.catalog.facts import DistributionFacts, FieldFacts, ListingFacts

BASE = "https://exchange.example/"
T0 = datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
SHA_A = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SHA_B = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
PREFIXES = """
PREFIX dcat: <http://www.w3.org/ns/dcat#>
PREFIX dct: <http://purl.org/dc/terms/>
PREFIX spdx: <http://spdx.org/rdf/terms#>
PREFIX odrl: <http://www.w3.org/ns/odrl/2/>
PREFIX dbx: <https://databourse.org/ns/catalog#>
PREFIX foaf: <http://xmlns.com/foaf/0.1/>
"""

META = CatalogMeta(
    name="databourse",
    title={"zh": "数据交易所目录", "en": "DataBourse catalog"},
    description={"zh": "挂牌数据产品", "en": "Listed data products"},
    publisher_name="DataBourse Exchange",
    homepage="https://exchange.example",
    issued=T0,
    modified=T0,
)


def listing(id: str, kind: str, **changes: Any) -> ListingFacts:
    facts = ListingFacts(
        id=id,
        org_id="91110108551385082Q",
        merchant_name="北京某数据科技有限公司",
        kind=kind,
        title="企业工商信用数据",
        summary="全国企业工商登记与信用信息，按日更新。",
        fields=(
            FieldFacts("uscc", "string", "统一社会信用代码"),
            FieldFacts("mobile", "string", "联系人手机号码", personal=True),
        ),
        tags=("信用", "企业"),
        industry="finance",
        category="credit",
        grade="general",
        sub_grade=None,
        update_frequency="daily",
        coverage="2019–2024，全国",
        scenarios=("信贷风控",),
        restrictions="不得用于营销",
        min_price_fen=120_000,
        max_price_fen=980_000,
        currency="CNY",
        plan_models=("fixed", "subscription"),
        has_sample=True,
        listed_at=T0,
        updated_at=T0,
    )
    return replace(facts, **changes)


def dist(file_id: str, version: int, sha: str, fmt: str = "csv") -> DistributionFacts:
    media = "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
    return DistributionFacts(file_id, version, fmt, media, 2048 * version, sha, 100, T0)


LISTINGS = [
    listing(
        "p-ds1", "dataset", distributions=(dist("f1", 1, SHA_A), dist("f2", 2, SHA_B, "parquet"))
    ),
    listing(
        "p-ds2",
        "dataset",
        language="en",
        title="Port container throughput",
        summary="Weekly container throughput of major ports.",
        tags=("logistics", "ports"),
        industry="transport",
        update_frequency="weekly",
        distributions=(dist("f3", 1, SHA_A.upper()),),
    ),
    listing("p-ds3", "dataset", summary="", update_frequency="realtime", industry="retail"),
    listing(
        "p-api", "api", title="手机号实名核验", update_frequency="realtime", quality_score=91.5
    ),
    listing("p-cmp", "compute", language="en", title="Private set intersection on card holders"),
]
POLICY = {
    "@context": "http://www.w3.org/ns/odrl.jsonld",
    "@type": "Offer",
    "uid": "https://exchange.example/policies/p-api",
    "permission": [
        {
            "target": "https://exchange.example/products/p-api",
            "action": "use",
            "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "risk"}],
        }
    ],
}


def export(**kw: Any) -> dict[str, Any]:
    return to_dcat(META, kw.get("listings", LISTINGS), BASE, kw.get("policies", {"p-api": POLICY}))


def graph(doc: dict[str, Any]) -> Graph:
    return Graph().parse(data=json.dumps(doc), format="json-ld")


def validate(doc: dict[str, Any]) -> tuple[bool, set[str]]:
    """Conformance and the local names of the paths that failed."""
    shapes = Graph().parse(data=shapes_file().read_text(encoding="utf-8"), format="turtle")
    conforms, report, _ = pyshacl.validate(graph(doc), shacl_graph=shapes, inference="none")
    paths = {
        str(p).rsplit("#", 1)[-1].rsplit("/", 1)[-1] for p in report.objects(None, SH.resultPath)
    }
    return bool(conforms), paths


def node(doc: dict[str, Any], key: str, product_id: str) -> dict[str, Any]:
    return next(n for n in doc[key] if n["dct:identifier"] == product_id)


def test_export_conforms_to_the_shapes() -> None:
    conforms, paths = validate(export())
    assert conforms, paths


def test_context_is_inline_and_document_is_plain_json() -> None:
    doc = export()
    contexts: list[Any] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if "@context" in x:
                contexts.append(x["@context"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc)
    assert contexts and all(isinstance(c, dict) for c in contexts)
    assert json.loads(json.dumps(doc)) == doc


def test_each_distribution_has_its_checksum_media_type_and_size() -> None:
    rows = graph(export()).query(
        PREFIXES
        + """SELECT ?id ?sha ?media ?size WHERE {
            ?ds a dcat:Dataset ; dct:identifier ?id ; dcat:distribution ?d .
            ?d dcat:accessURL ?url ; dcat:mediaType ?media ; dcat:byteSize ?size ;
               spdx:checksum [ spdx:algorithm spdx:checksumAlgorithm_sha256 ;
                               spdx:checksumValue ?sha ] .
        }"""
    )
    found = {(str(r.id), r.sha.toPython().hex(), str(r.media), int(r.size)) for r in rows}
    iana = "https://www.iana.org/assignments/media-types/"
    assert found == {
        ("p-ds1", SHA_A, iana + "text/csv", 2048),
        ("p-ds1", SHA_B, iana + "application/vnd.apache.parquet", 4096),
        ("p-ds2", SHA_A, iana + "text/csv", 2048),
    }


def test_dataset_without_files_is_still_a_described_dataset() -> None:
    g = graph(export())
    ds = URIRef("https://exchange.example/products/p-ds3")
    assert (ds, None, None) in g
    desc = g.query(PREFIXES + "SELECT ?d WHERE { ?s dct:description ?d }", initBindings={"s": ds})
    assert [str(r.d) for r in desc] == ["企业工商信用数据 (uscc, mobile)"]
    assert not list(g.objects(ds, URIRef("http://www.w3.org/ns/dcat#distribution")))


def test_api_and_compute_products_are_data_services_on_the_exchange() -> None:
    rows = graph(export()).query(
        PREFIXES
        + """SELECT ?id ?url WHERE {
            ?cat a dcat:Catalog ; dcat:service ?s .
            ?s a dcat:DataService ; dct:identifier ?id ; dcat:endpointURL ?url .
        }"""
    )
    assert {(str(r.id), str(r.url)) for r in rows} == {
        ("p-api", "https://exchange.example/gateway/p-api"),
        ("p-cmp", "https://exchange.example/compute/p-cmp"),
    }


def test_update_frequency_maps_to_eu_frequency_iris() -> None:
    rows = graph(export()).query(
        PREFIXES
        + "SELECT ?id ?f WHERE { ?s a dcat:Dataset ; dct:identifier ?id ;"
        + " dct:accrualPeriodicity ?f }"
    )
    eu = "http://publications.europa.eu/resource/authority/frequency/"
    assert {(str(r.id), str(r.f)) for r in rows} == {
        ("p-ds1", eu + "DAILY"),
        ("p-ds2", eu + "WEEKLY"),
        ("p-ds3", eu + "UPDATE_CONT"),
    }


def test_languages_publishers_themes_and_prices() -> None:
    g = graph(export())
    titles = g.query(PREFIXES + 'SELECT ?t WHERE { ?s dct:identifier "p-ds2" ; dct:title ?t }')
    assert [(str(r.t), r.t.language) for r in titles] == [("Port container throughput", "en")]
    pubs = g.query(
        PREFIXES
        + 'SELECT ?p ?n WHERE { ?s dct:identifier "p-api" ; dct:publisher ?p . ?p foaf:name ?n }'
    )
    assert [(str(r.p), str(r.n)) for r in pubs] == [
        ("https://exchange.example/organisations/91110108551385082Q", "北京某数据科技有限公司")
    ]
    themes = {
        str(r.t)
        for r in g.query(PREFIXES + 'SELECT ?t WHERE { ?s dct:identifier "p-ds2" ; dcat:theme ?t }')
    }
    assert themes == {
        "https://exchange.example/vocab/industry/transport",
        "http://publications.europa.eu/resource/authority/data-theme/TRAN",
    }
    price = g.query(
        PREFIXES
        + 'SELECT ?p ?c WHERE { ?s dct:identifier "p-api" ; dbx:minPrice ?p ; dbx:currency ?c }'
    )
    assert [(str(r.p), str(r.c)) for r in price] == [("1200.00", "CNY")]


def test_policy_is_nested_and_its_odrl_terms_survive() -> None:
    original = copy.deepcopy(POLICY)
    doc = export()
    assert original == POLICY  # the caller's policy is not modified
    rows = graph(doc).query(
        PREFIXES
        + """SELECT ?action ?left WHERE {
            ?s dct:identifier "p-api" ; odrl:hasPolicy ?p .
            ?p a odrl:Offer ; odrl:permission ?perm .
            ?perm odrl:action ?action ; odrl:constraint [ odrl:leftOperand ?left ] .
        }"""
    )
    odrl = "http://www.w3.org/ns/odrl/2/"
    assert [(str(r.action), str(r.left)) for r in rows] == [(odrl + "use", odrl + "purpose")]


def test_a_remote_policy_context_other_than_odrl_is_refused() -> None:
    bad = {**POLICY, "@context": ["http://www.w3.org/ns/odrl.jsonld", "https://other.example/ctx"]}
    with pytest.raises(ValueError, match="remote JSON-LD context"):
        to_dcat(META, LISTINGS, BASE, {"p-api": bad})


def test_output_is_deterministic_and_unknown_kinds_are_refused() -> None:
    assert export(listings=list(reversed(LISTINGS))) == export()
    with pytest.raises(ValueError, match="unknown product kind"):
        to_dcat(META, [listing("x", "stream")], BASE)


def test_catalog_meta_needs_title_and_description() -> None:
    with pytest.raises(ValueError):
        replace(META, title={"en": " "})


# -------------------------------------------------------------- the shapes have teeth


def _first_distribution(doc: dict[str, Any]) -> dict[str, Any]:
    return node(doc, "dcat:dataset", "p-ds1")["dcat:distribution"][0]


def _drop_access_url(doc: dict[str, Any]) -> None:
    del _first_distribution(doc)["dcat:accessURL"]


def _drop_dataset_title(doc: dict[str, Any]) -> None:
    del node(doc, "dcat:dataset", "p-ds2")["dct:title"]


def _literal_media_type(doc: dict[str, Any]) -> None:
    _first_distribution(doc)["dcat:mediaType"] = "text/csv"


def _foreign_media_type(doc: dict[str, Any]) -> None:
    _first_distribution(doc)["dcat:mediaType"] = {"@id": "https://example.org/csv"}


def _decimal_byte_size(doc: dict[str, Any]) -> None:
    _first_distribution(doc)["dcat:byteSize"] = {"@value": "2048.5", "@type": "xsd:decimal"}


def _string_byte_size(doc: dict[str, Any]) -> None:
    _first_distribution(doc)["dcat:byteSize"] = "2048"


def _negative_byte_size(doc: dict[str, Any]) -> None:
    _first_distribution(doc)["dcat:byteSize"] = {"@value": "-1", "@type": "xsd:nonNegativeInteger"}


def _short_checksum(doc: dict[str, Any]) -> None:
    _first_distribution(doc)["spdx:checksum"]["spdx:checksumValue"]["@value"] = "abcd"


def _checksum_without_algorithm(doc: dict[str, Any]) -> None:
    del _first_distribution(doc)["spdx:checksum"]["spdx:algorithm"]


def _string_issued(doc: dict[str, Any]) -> None:
    node(doc, "dcat:dataset", "p-ds1")["dct:issued"] = "2025-03-01"


def _service_without_endpoint(doc: dict[str, Any]) -> None:
    del node(doc, "dcat:service", "p-api")["dcat:endpointURL"]


def _literal_frequency(doc: dict[str, Any]) -> None:
    node(doc, "dcat:dataset", "p-ds1")["dct:accrualPeriodicity"] = "daily"


def _publisher_without_name(doc: dict[str, Any]) -> None:
    del doc["dct:publisher"]["foaf:name"]


def _empty_catalog(doc: dict[str, Any]) -> None:
    doc["dcat:dataset"] = []
    doc["dcat:service"] = []


@pytest.mark.parametrize(
    ("break_it", "path"),
    [
        (_drop_access_url, "accessURL"),
        (_drop_dataset_title, "title"),
        (_literal_media_type, "mediaType"),
        (_foreign_media_type, "mediaType"),
        (_decimal_byte_size, "byteSize"),
        (_string_byte_size, "byteSize"),
        (_negative_byte_size, "byteSize"),
        (_short_checksum, None),  # the sha256 length rule is a node-level constraint
        (_checksum_without_algorithm, "algorithm"),
        (_string_issued, "issued"),
        (_service_without_endpoint, "endpointURL"),
        (_literal_frequency, "accrualPeriodicity"),
        (_publisher_without_name, "name"),
        (_empty_catalog, None),
    ],
)
def test_shapes_reject_a_broken_document(break_it: Any, path: str | None) -> None:
    doc = export()
    break_it(doc)
    conforms, paths = validate(doc)
    assert not conforms
    if path is not None:
        assert path in paths, paths


def test_policies_from_the_policy_module_embed_with_their_own_context() -> None:
    """A real ODRL offer (context: the ODRL URL plus an inline dict) nests and validates."""
    from databourse.catalog import policy as pol

    offer = pol.to_odrl(
        pol.UsagePolicy.model_validate(
            {"purposes": ["research"], "term_days": 30, "territories": ["CN"]}
        ),
        uid="https://exchange.example/p/policy",
        assigner="https://exchange.example/org",
        target="https://exchange.example/p",
    )
    assert isinstance(offer["@context"], list)
    item = listing("p-real", "dataset")
    doc = to_dcat(META, [item], "https://exchange.example", {item.id: offer})
    g = Graph().parse(data=json.dumps(doc), format="json-ld")
    conforms, _, report = pyshacl.validate(
        g,
        shacl_graph=Graph().parse(data=shapes_file().read_text(encoding="utf-8"), format="turtle"),
        inference="none",
    )
    assert conforms, report
    odrl = "http://www.w3.org/ns/odrl/2/"
    assert (None, URIRef(odrl + "permission"), None) in g
