"""Usage policies: shape, fit to the product, narrowing, and their ODRL 2.2 JSON-LD."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from rdflib import Graph, Literal, Namespace, URIRef

from databourse.catalog.errors import InvalidPolicy
from databourse.catalog.policy import (
    DBP,
    ODRL_CONTEXT_URL,
    UsagePolicy,
    narrows,
    odrl_context,
    to_odrl,
    validate_policy,
)

ODRL = Namespace("http://www.w3.org/ns/odrl/2/")
DB = Namespace(DBP)
XSD = Namespace("http://www.w3.org/2001/XMLSchema#")
RDF_TYPE = URIRef("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
BASE = "https://exchange.example/api/v1"


def policy(**changes: Any) -> UsagePolicy:
    data: dict[str, Any] = {"purposes": ["risk_control"], "term_days": 365}
    data.update(changes)
    return UsagePolicy.model_validate(data)


# --- shape -------------------------------------------------------------------------------


def test_json_round_trip_is_exact_and_canonical() -> None:
    p = policy(
        purposes=["research", "marketing", "research"],
        territories=["cn", "CN-SH"],
        not_before="2026-01-01",
        duties=["report_usage", "attribution"],
        fields=["b", "a"],
    )
    assert [x.value for x in p.purposes] == ["marketing", "research"]
    assert p.territories == ["CN", "CN-SH"]
    assert p.fields == ["a", "b"]
    dumped = p.model_dump(mode="json")
    assert dumped["not_before"] == "2026-01-01"
    assert UsagePolicy.model_validate(dumped) == p
    assert UsagePolicy.model_validate_json(json.dumps(dumped)) == p


def test_defaults_are_the_narrow_ones() -> None:
    p = policy()
    assert p.territories == ["CN"]
    assert p.onward.mode == "prohibited"
    assert p.fields is None and p.duties == []


@pytest.mark.parametrize(
    "change",
    [
        {"purposes": []},
        {"purposes": ["spying"]},
        {"term_days": 0},
        {"term_days": "30"},
        {"term_days": True},
        {"term_days": 30.0},
        {"territories": []},
        {"territories": ["XX"]},
        {"territories": ["CHN"]},
        {"territories": ["ZZ-01"]},
        {"not_after": "31/12/2026"},
        {"not_after": 1767139200},
        {"count": {"max_calls": -1}},
        {"count": {"max_calls": False}},
        {"count": {"max_calls": 10**16}},
        {"output": {"min_group_size": 1}},
        {"output": {"epsilon_micro": -1}},
        {"output": {"delta_pico": 10**12}},
        {"onward": {"mode": "anyone"}},
        {"duties": ["be_nice"]},
        {"unexpected": 1},
    ],
)
def test_malformed_policies_are_refused_by_shape(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        policy(**change)


# --- fit to the product ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "change", "field"),
    [
        ("dataset", {"name", "city"}, {"fields": ["phone"]}, "fields"),
        ("dataset", {"name"}, {"fields": []}, "fields"),
        ("api", None, {"term_days": None}, "term_days"),
        ("api", None, {"not_before": "2026-02-01", "not_after": "2026-01-01"}, "not_after"),
        ("api", None, {"not_before": "2026-01-01", "not_after": "2026-01-10"}, "term_days"),
        ("api", None, {"count": {"max_downloads": 3}}, "count.max_downloads"),
        ("dataset", None, {"count": {"max_calls": 3}}, "count.max_calls"),
        (
            "api",
            None,
            {"rate": {"max_per_second": 100, "max_per_minute": 60}},
            "rate.max_per_second",
        ),
        ("dataset", None, {"output": {"aggregates_only": True}}, "output.aggregates_only"),
        ("compute", None, {"output": {"min_group_size": 5}}, "output.min_group_size"),
        ("api", None, {"output": {"epsilon_micro": 1_000_000}}, "output.epsilon_micro"),
        ("compute", None, {"output": {"epsilon_micro": 0}}, "output.epsilon_micro"),
        ("compute", None, {"output": {"delta_pico": 5}}, "output.delta_pico"),
        ("api", None, {"onward": {"mode": "allowed_to"}}, "onward.parties"),
        ("api", None, {"onward": {"parties": ["org-1"]}}, "onward.parties"),
        (
            "api",
            None,
            {"term_days": 30, "retention_days": 60, "duties": ["delete_at_term_end"]},
            "retention_days",
        ),
        ("hardware", None, {}, "kind"),
    ],
)
def test_policies_that_do_not_fit_the_product_name_the_problem(
    kind: str, fields: set[str] | None, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidPolicy) as err:
        validate_policy(policy(**change), kind=kind, fields=fields)
    assert err.value.extra["field"] == field
    assert err.value.status == 422 and err.value.slug == "invalid-policy"


def test_unknown_field_is_named_in_the_message() -> None:
    with pytest.raises(InvalidPolicy) as err:
        validate_policy(policy(fields=["name", "phone"]), kind="dataset", fields={"name"})
    assert "'phone'" in err.value.detail
    assert err.value.extra == {"field": "fields", "value": "phone"}


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("dataset", {"fields": ["name"], "count": {"max_downloads": 5, "max_rows": 10_000}}),
        ("api", {"count": {"max_calls": 1_000_000}, "rate": {"max_per_second": 10}}),
        (
            "compute",
            {
                "output": {
                    "aggregates_only": True,
                    "min_group_size": 10,
                    "epsilon_micro": 1_000_000,
                    "delta_pico": 1_000,
                }
            },
        ),
        ("api", {"term_days": None, "not_after": "2027-06-30"}),
        ("api", {"not_before": "2026-01-01", "not_after": "2026-01-01", "term_days": 1}),
        ("api", {"retention_days": 30, "duties": ["delete_at_term_end", "report_usage"]}),
        ("api", {"onward": {"mode": "allowed_to", "parties": ["org-2"]}}),
    ],
)
def test_coherent_policies_pass(kind: str, change: dict[str, Any]) -> None:
    validate_policy(policy(**change), kind=kind, fields={"name", "city"})


# --- narrowing ---------------------------------------------------------------------------

LISTING = policy(
    purposes=["risk_control", "credit_assessment"],
    territories=["CN"],
    fields=["name", "score"],
    count={"max_calls": 10_000},
    output={"aggregates_only": True, "min_group_size": 10, "epsilon_micro": 2_000_000},
    duties=["attribution"],
    retention_days=90,
)


def test_a_narrower_contract_has_no_violations() -> None:
    contract = LISTING.model_copy(
        update={
            "purposes": LISTING.purposes[:1],
            "territories": ["CN-SH"],
            "fields": ["score"],
            "term_days": 180,
        }
    )
    assert narrows(contract, LISTING) == []
    assert narrows(LISTING, LISTING) == []


@pytest.mark.parametrize(
    ("update", "phrase"),
    [
        ({"purposes": ["marketing"]}, "purpose 'marketing'"),
        ({"territories": ["HK"]}, "territory 'HK'"),
        ({"fields": ["name", "phone"]}, "field 'phone'"),
        ({"fields": None}, "every field"),
        ({"count": {"max_calls": 20_000}}, "max_calls must be at most 10000"),
        ({"count": {}}, "max_calls must be at most 10000, not unlimited"),
        ({"term_days": 400}, "at most 365 days"),
        ({"output": {"aggregates_only": True, "min_group_size": 5, "epsilon_micro": 1}}, "group"),
        ({"output": {"aggregates_only": True, "min_group_size": 10}}, "epsilon_micro"),
        ({"onward": {"mode": "allowed_to", "parties": ["org-9"]}}, "onward transfer"),
        ({"duties": []}, "duty 'attribution'"),
        ({"retention_days": None}, "retention_days"),
    ],
)
def test_a_wider_contract_is_reported(update: dict[str, Any], phrase: str) -> None:
    data = LISTING.model_dump(mode="json") | update
    violations = narrows(UsagePolicy.model_validate(data), LISTING)
    assert any(phrase in v for v in violations), violations


# --- ODRL 2.2 ----------------------------------------------------------------------------


def graph_of(doc: dict[str, Any]) -> Graph:
    """Expand offline: the remote ODRL context is swapped for the shipped copy."""
    assert doc["@context"][0] == ODRL_CONTEXT_URL
    local = dict(doc, **{"@context": [odrl_context(), *doc["@context"][1:]]})
    return Graph().parse(data=json.dumps(local), format="json-ld")


def constraint(g: Graph, rule: Any, left: URIRef) -> tuple[URIRef, list[Any]]:
    for c in g.objects(rule, ODRL.constraint):
        if g.value(c, ODRL.leftOperand) == left:
            operator = g.value(c, ODRL.operator)
            assert isinstance(operator, URIRef)
            return operator, sorted(g.objects(c, ODRL.rightOperand))
    raise AssertionError(f"no constraint on {left}")


def rules(g: Graph, kind: URIRef, action: URIRef) -> list[Any]:
    return [r for r in g.objects(None, kind) if g.value(r, ODRL.action) == action]


def test_the_shipped_context_is_the_odrl_22_context() -> None:
    ctx = odrl_context()
    assert ctx["odrl"] == "http://www.w3.org/ns/odrl/2/"
    assert ctx["uid"] == "@id"
    assert ctx["obligation"] == {"@type": "@id", "@id": "odrl:obligation"}
    for term in ("purpose", "spatial", "dateTime", "count", "elapsedTime", "recipient"):
        assert ctx[term] == f"odrl:{term}"


def test_offer_expands_to_permission_with_odrl_constraints() -> None:
    p = policy(
        purposes=["risk_control", "research"],
        territories=["CN", "HK"],
        not_before="2026-01-01",
        not_after="2026-12-31",
        count={"max_calls": 5000},
        duties=["attribution", "pay_per_use", "report_usage"],
    )
    uid = f"{BASE}/products/p1/policy"
    g = graph_of(to_odrl(p, uid=uid, assigner=f"{BASE}/orgs/o1", target=f"{BASE}/products/p1"))
    offer = URIRef(uid)
    assert (offer, RDF_TYPE, ODRL.Offer) in g
    [use] = rules(g, ODRL.permission, ODRL.use)
    assert (offer, ODRL.permission, use) in g
    assert g.value(use, ODRL.target) == URIRef(f"{BASE}/products/p1")
    assert g.value(use, ODRL.assigner) == URIRef(f"{BASE}/orgs/o1")
    assert constraint(g, use, ODRL.purpose) == (
        ODRL.isAnyOf,
        [Literal("research"), Literal("risk_control")],
    )
    assert constraint(g, use, ODRL.spatial) == (ODRL.isAnyOf, [Literal("CN"), Literal("HK")])
    dates = {
        g.value(c, ODRL.operator): g.value(c, ODRL.rightOperand)
        for c in g.objects(use, ODRL.constraint)
        if g.value(c, ODRL.leftOperand) == ODRL.dateTime
    }
    assert dates == {
        ODRL.gteq: Literal("2026-01-01", datatype=XSD.date),
        ODRL.lteq: Literal("2026-12-31", datatype=XSD.date),
    }
    assert constraint(g, use, ODRL.elapsedTime) == (
        ODRL.lteq,
        [Literal("P365D", datatype=XSD.duration)],
    )
    assert constraint(g, use, ODRL["count"]) == (ODRL.lteq, [Literal(5000)])
    duties = {g.value(d, ODRL.action) for d in g.objects(use, ODRL.duty)}
    assert duties == {ODRL.attribute, ODRL.compensate, ODRL.inform}
    # Onward transfer is prohibited by default.
    [prohibited] = rules(g, ODRL.prohibition, ODRL.distribute)
    assert (offer, ODRL.prohibition, prohibited) in g


def test_databourse_terms_live_in_their_own_namespace() -> None:
    p = policy(
        fields=["score"],
        count={"max_rows": 100},
        rate={"max_per_second": 5, "max_per_minute": 200},
        output={
            "aggregates_only": True,
            "min_group_size": 10,
            "epsilon_micro": 1_500_000,
            "delta_pico": 1,
        },
    )
    g = graph_of(to_odrl(p, uid=f"{BASE}/p", assigner=f"{BASE}/o", target=f"{BASE}/t"))
    [use] = rules(g, ODRL.permission, ODRL.use)
    assert constraint(g, use, DB.field) == (ODRL.isAnyOf, [Literal("score")])
    assert constraint(g, use, DB.rows) == (ODRL.lteq, [Literal(100)])
    assert constraint(g, use, DB.ratePerSecond) == (ODRL.lteq, [Literal(5)])
    assert constraint(g, use, DB.ratePerMinute) == (ODRL.lteq, [Literal(200)])
    assert constraint(g, use, DB.minGroupSize) == (ODRL.gteq, [Literal(10)])
    assert constraint(g, use, DB.aggregatesOnly) == (ODRL.eq, [Literal(True)])
    _, [eps] = constraint(g, use, DB.epsilon)
    _, [delta] = constraint(g, use, DB.delta)
    assert eps.datatype == XSD.decimal and str(eps) == "1.5"
    assert delta.datatype == XSD.decimal and str(delta) == "0.000000000001"


def test_agreement_allows_onward_transfer_to_named_parties_and_deletion_duty() -> None:
    p = policy(
        onward={"mode": "allowed_to", "parties": ["org-7"]},
        retention_days=30,
        duties=["delete_at_term_end"],
    )
    uid = f"{BASE}/contracts/c1/policy"
    doc = to_odrl(
        p,
        uid=uid,
        assigner=f"{BASE}/orgs/seller",
        target=f"{BASE}/products/p1",
        policy_type="Agreement",
        assignee=f"{BASE}/orgs/buyer",
    )
    g = graph_of(doc)
    assert (URIRef(uid), RDF_TYPE, ODRL.Agreement) in g
    [distribute] = rules(g, ODRL.permission, ODRL.distribute)
    assert g.value(distribute, ODRL.assignee) == URIRef(f"{BASE}/orgs/buyer")
    assert constraint(g, distribute, ODRL.recipient) == (ODRL.isAnyOf, [Literal("org-7")])
    assert not list(g.objects(URIRef(uid), ODRL.prohibition))
    [delete] = rules(g, ODRL.obligation, ODRL.delete)
    assert constraint(g, delete, ODRL.event) == (ODRL.gt, [DB.termEnd])
    [use] = rules(g, ODRL.permission, ODRL.use)
    [retention] = [d for d in g.objects(use, ODRL.duty) if g.value(d, ODRL.action) == ODRL.delete]
    assert constraint(g, retention, ODRL.elapsedTime) == (
        ODRL.lteq,
        [Literal("P30D", datatype=XSD.duration)],
    )


def test_an_agreement_needs_an_assignee() -> None:
    with pytest.raises(ValueError, match="assignee"):
        to_odrl(policy(), uid="urn:p", assigner="urn:a", target="urn:t", policy_type="Agreement")
