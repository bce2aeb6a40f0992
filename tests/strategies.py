"""Hypothesis strategies shared by the property tests: small rosters and sequences of cycles.

A :class:`Plan` is a roster of a few beneficiaries and the cycles to run on it. What a decision
fixes (first and last month, paid_through, category) stays the same for the whole plan; what a
clerk changes between imports (status, coefficient, channel, proxy mandate) changes per step, and
each step says what dispatch did to the approved instructions afterwards.

Also what a hostile payment operator may answer (:class:`Mutation`, :func:`hostile_plans`,
:func:`hostile_routes`) and values generated from an OpenAPI schema (:func:`from_openapi`), for
the GSMA adapter's tests (``tests/test_gsma_hostile.py``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import attrs
from hypothesis import strategies as st

from conftest import roster_row
from sap_payments import Period

#: Months a plan may touch: both sides of the 2021-07-01 level change.
FIRST_MONTH = Period.parse("2021-01").ordinal
LAST_MONTH = Period.parse("2021-12").ordinal

CATEGORIES = (
    "elderly_80plus",
    "disabled_heavy",
    "disabled_severe",
    "orphan_4plus",
    "orphan_under4",
)
#: Roster coefficients: None uses the category's; the others include ones that round.
COEFFICIENTS = (None, "0.5", "1.25", "1.5", "2", "2.5", "0.3333", "1.0001")
#: What dispatch may do to a READY instruction (None: leave it READY).
OUTCOMES = (None, "SUBMITTED", "PAID", "PAID", "FAILED", "RETURNED", "UNCLAIMED")

CHANNELS: Mapping[str, Mapping[str, str]] = {
    "ewallet": {"channel": "ewallet", "provider": "viettelpay", "msisdn": "0912345678"},
    "bank": {
        "channel": "bank",
        "provider": "vietinbank",
        "msisdn": "",
        "bank_bin": "970415",
        "account_number": "1234567890",
    },
    "postal": {"channel": "postal", "provider": "vnpost", "msisdn": "", "pay_point": "BD-01"},
}


@attrs.frozen
class Decision:
    """What stays fixed for one beneficiary (month ordinals)."""

    beneficiary_id: str
    category: str
    first: int
    last: int | None
    paid_through: int | None


@attrs.frozen
class Terms:
    """What a roster import may change for one beneficiary."""

    status: str
    coefficient: str | None
    channel: str
    mandate_until: str | None  # None: paid to the beneficiary; else a proxy valid to this day


@attrs.frozen
class Step:
    """One cycle: the roster imported before it; late results of the previous cycle that
    arrive once this one is prepared (it is then prepared again); an optional roster change
    before preparing again; and what dispatch does to each instruction once it is approved."""

    period: int
    terms: tuple[Terms, ...]
    late_outcomes: tuple[str | None, ...]
    revised_terms: tuple[Terms, ...] | None
    outcomes: tuple[str | None, ...]


@attrs.frozen
class Plan:
    decisions: tuple[Decision, ...]
    steps: tuple[Step, ...]


def row(decision: Decision, terms: Terms) -> dict[str, str]:
    """The roster row (format v1) of a beneficiary under the given terms."""
    overrides: dict[str, str] = {
        "category": decision.category,
        "first_period": Period.text(decision.first),
        "last_period": Period.text(decision.last) if decision.last is not None else "",
        "paid_through": (
            Period.text(decision.paid_through) if decision.paid_through is not None else ""
        ),
        "status": terms.status,
        "coefficient": terms.coefficient or "",
        **CHANNELS[terms.channel],
    }
    if terms.mandate_until is not None:
        overrides.update(
            proxy_name="Trần Thị Bình",
            proxy_relation="con",
            mandate_valid_until=terms.mandate_until,
        )
    return roster_row(decision.beneficiary_id, **overrides)


def roster(plan: Plan, terms: tuple[Terms, ...]) -> list[dict[str, str]]:
    return [row(d, t) for d, t in zip(plan.decisions, terms, strict=True)]


months = st.integers(min_value=FIRST_MONTH, max_value=LAST_MONTH)


@st.composite
def decisions(draw: st.DrawFn, beneficiary_id: str) -> Decision:
    first = draw(months)
    last = draw(st.none() | st.integers(min_value=first, max_value=first + 8))
    paid_through = draw(st.none() | st.integers(min_value=first - 3, max_value=first + 6))
    return Decision(beneficiary_id, draw(st.sampled_from(CATEGORIES)), first, last, paid_through)


def mandate_days() -> st.SearchStrategy[str | None]:
    """No proxy, or a proxy whose mandate ends on some day of the plan's window."""
    day = st.builds(
        lambda ordinal, day: f"{Period.text(ordinal)}-{day:02d}",
        st.integers(min_value=FIRST_MONTH, max_value=LAST_MONTH + 2),
        st.sampled_from([1, 15, 28]),
    )
    return st.one_of(st.none(), st.none(), day)


@st.composite
def terms_for(draw: st.DrawFn, decision: Decision) -> Terms:
    statuses = ["active", "active", "suspended"]
    if decision.last is not None:
        statuses.append("ceased")
    return Terms(
        status=draw(st.sampled_from(statuses)),
        coefficient=draw(st.sampled_from(COEFFICIENTS)),
        channel=draw(st.sampled_from(sorted(CHANNELS))),
        mandate_until=draw(mandate_days()),
    )


@st.composite
def plans(draw: st.DrawFn, *, max_people: int = 4, max_cycles: int = 4) -> Plan:
    count = draw(st.integers(min_value=1, max_value=max_people))
    people = tuple(draw(decisions(f"P{k}")) for k in range(count))
    periods = sorted(
        draw(
            st.sets(
                st.integers(min_value=FIRST_MONTH + 2, max_value=LAST_MONTH + 3),
                min_size=1,
                max_size=max_cycles,
            )
        )
    )
    steps = []
    for period in periods:
        terms = tuple(draw(terms_for(d)) for d in people)
        late = tuple(draw(st.sampled_from(OUTCOMES)) for _ in people)
        revised = draw(st.none() | st.tuples(*(terms_for(d) for d in people)))
        outcomes = tuple(draw(st.sampled_from(OUTCOMES)) for _ in people)
        steps.append(Step(period, terms, late, revised, outcomes))
    return Plan(people, tuple(steps))


# -- hostile operator answers (tests/test_gsma_hostile.py) ----------------------------------------
#: JSON values that are not objects: what a broken gateway or a foreign API may answer.
NOT_OBJECTS: tuple[object, ...] = ([], [{}], "text", "", 0, 5.5, None, True)
#: A value of the wrong type for any field.
WRONG_TYPES: tuple[object, ...] = ([], {}, 7, -1, 1e308, None, False, "", "x" * 300, [{"k": 1}])
#: Request, transaction and batch states: the GSMA's own and foreign ones.
STATES = ("pending", "completed", "failed", "success", "reversed", "rejected", "COMPLETED", "", "?")
#: Amounts (and currencies) an answer may echo: another amount, and text that is no amount.
AMOUNTS: tuple[object, ...] = ("1", "360001", "360000.5", "-5", "1e9", "Infinity", "NaN", 5, None)
CURRENCIES: tuple[object, ...] = ("USD", "XYZ", "", 5, None)
#: Where a ``link`` may point instead: nowhere of ours, no URL, another host.
LINKS: tuple[object, ...] = (
    "/transactions/NOPE",
    "/batchtransactions/",
    "/elsewhere/1",
    "http://[",
    "https://elsewhere.example/transactions/T-1",
    "/requeststates/\x00 ?x=1",
    5,
)
#: HTTP statuses an answer may come with instead of its own (never a forged GSMA 404: an
#: operator that says "never received" of what it received cannot be defended against).
STATUSES = (200, 201, 202, 204, 302, 404, 418)
#: Header values of a count or a wait that are no such thing.
BAD_NUMBERS = ("abc", "-1", "99999999999999999999999", "²", "1e3", "")


@attrs.frozen
class Mutation:
    """One way to spoil one answer; the test that serves the answers applies it.

    ``kind``: ``not_object`` (the body becomes ``value``), ``html`` (an HTML page with status
    ``value``), ``truncate`` (the JSON text cut at the fraction ``value``), ``deep`` (a list
    nested ``value`` deep), ``huge`` (padded past the size cap), ``drop`` / ``retype`` (the
    ``index``-th field removed / given ``value``), ``foreign_key`` (the instruction key replaced
    by the ``index``-th of the keys known, or one never sent), ``amount``, ``currency``,
    ``wallet``, ``state``, ``link`` (that field given ``value``), ``status`` (the HTTP status
    ``value``), ``count_header`` (``X-Records-Available-Count: value``), ``extra_entry`` (a
    listing gains an entry for the ``index``-th key), ``offset_ignored`` (a listing answers its
    first page whatever the offset) and ``spec`` (the body replaced by a value valid against the
    operation's schema in the GSMA files: valid, but about nothing we sent).
    """

    kind: str
    value: object = None
    index: int = 0


def mutations() -> st.SearchStrategy[Mutation]:
    """Every kind of :class:`Mutation`, with its values; those that make an answer say
    something else of a payment (another key, amount, wallet or state) twice as often."""
    index = st.integers(min_value=0, max_value=7)
    about_payments = st.one_of(
        st.builds(Mutation, st.just("foreign_key"), st.none(), index),
        st.builds(Mutation, st.just("amount"), st.sampled_from(AMOUNTS)),
        st.builds(Mutation, st.just("wallet"), st.sampled_from(("0999999999", "", 5, None))),
        st.builds(Mutation, st.just("state"), st.sampled_from(STATES)),
        st.builds(Mutation, st.just("extra_entry"), st.none(), index),
        st.just(Mutation("spec")),
    )
    return st.one_of(
        about_payments,
        st.builds(Mutation, st.just("not_object"), st.sampled_from(NOT_OBJECTS)),
        st.builds(Mutation, st.just("html"), st.sampled_from((200, 201, 202, 400, 404))),
        st.builds(Mutation, st.just("truncate"), st.floats(min_value=0.0, max_value=0.95)),
        st.builds(Mutation, st.just("deep"), st.sampled_from((2_000, 100_000))),
        st.just(Mutation("huge")),
        st.builds(Mutation, st.just("drop"), st.none(), index),
        st.builds(Mutation, st.just("retype"), st.sampled_from(WRONG_TYPES), index),
        st.builds(Mutation, st.just("foreign_key"), st.none(), index),
        st.builds(Mutation, st.just("amount"), st.sampled_from(AMOUNTS)),
        st.builds(Mutation, st.just("currency"), st.sampled_from(CURRENCIES)),
        st.builds(Mutation, st.just("wallet"), st.sampled_from(("0999999999", "", 5, None))),
        st.builds(Mutation, st.just("state"), st.sampled_from(STATES)),
        st.builds(Mutation, st.just("link"), st.sampled_from(LINKS)),
        st.builds(Mutation, st.just("status"), st.sampled_from(STATUSES)),
        st.builds(Mutation, st.just("count_header"), st.sampled_from(BAD_NUMBERS)),
        st.builds(Mutation, st.just("extra_entry"), st.none(), index),
        st.just(Mutation("offset_ignored")),
        st.just(Mutation("spec")),
    )


def hostile_plans(max_size: int = 16) -> st.SearchStrategy[tuple[Mutation | None, ...]]:
    """What happens to each answer, in the order they are served (None: served as it is;
    answers past the end of the plan are served as they are)."""
    return st.lists(st.none() | mutations(), max_size=max_size).map(tuple)


#: The operations of the GSMA disbursement flow, as ``hostile_routes`` names them.
ROUTES = (
    "POST /transactions/type/disbursement",
    "GET /requeststates/{id}",
    "GET /transactions/{ref}",
    "GET /responses/{cid}",
    "POST /batchtransactions",
    "GET /batchtransactions/{id}",
    "GET /batchtransactions/{id}/completions",
    "GET /batchtransactions/{id}/rejections",
)


def hostile_routes(
    max_size: int = 6,
) -> st.SearchStrategy[dict[str, tuple[Mutation | None, ...]]]:
    """What happens to the answers of some operations, in the order each operation answers
    (taken before :func:`hostile_plans`' order): a spoiled answer lands on a late step of the
    flow — a status look-up — as often as on the first."""
    return st.dictionaries(
        st.sampled_from(ROUTES),
        st.lists(st.none() | mutations(), min_size=1, max_size=max_size).map(tuple),
        max_size=3,
    )


def from_openapi(
    document: Mapping[str, Any], schema: Mapping[str, Any], depth: int = 0
) -> st.SearchStrategy[Any]:
    """Values valid against ``schema``, a schema of the OpenAPI 3.0 ``document``: the subset
    the GSMA files use — ``$ref``, ``allOf``, objects (required properties always, optional ones
    while shallow), arrays, strings (``enum``, ``pattern``, lengths, ``date``/``date-time``),
    integers, numbers, booleans."""
    while "$ref" in schema:
        target: Any = document
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    if "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties", {}))
        required: list[str] = list(merged.get("required", []))
        for part in schema["allOf"]:
            while "$ref" in part:
                target = document
                for piece in str(part["$ref"]).removeprefix("#/").split("/"):
                    target = target[piece]
                part = target
            properties.update(part.get("properties", {}))
            required.extend(part.get("required", []))
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        if properties:
            merged["properties"] = properties
        merged["required"] = required
        schema = merged
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    kind = schema.get("type") or ("object" if "properties" in schema else None)
    if kind == "object":
        properties = schema.get("properties", {})
        needed = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: from_openapi(document, properties[name], depth + 1) for name in needed},
            optional={}
            if depth > 2
            else {
                name: from_openapi(document, sub, depth + 1)
                for name, sub in properties.items()
                if name not in needed
            },
        )
    if kind == "array":
        low = int(schema.get("minItems", 0))
        return st.lists(
            from_openapi(document, schema.get("items", {}), depth + 1),
            min_size=low,
            max_size=max(low, min(int(schema.get("maxItems", 3)), 3)),
        )
    if kind == "string":
        return _openapi_text(schema)
    if kind == "integer":
        return st.integers(
            min_value=schema.get("minimum", -(2**31)), max_value=schema.get("maximum", 2**31)
        )
    if kind == "number":
        return st.integers(min_value=0, max_value=10**9)
    if kind == "boolean":
        return st.booleans()
    return st.none()


def _openapi_text(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", 40))
    form = schema.get("format")
    if form == "date-time":
        return st.datetimes(timezones=st.just(dt.UTC)).map(lambda t: t.isoformat())
    if form == "date":
        return st.dates().map(lambda d: d.isoformat())
    pattern = schema.get("pattern")
    if pattern:
        try:
            re.compile(pattern)
        except re.error:
            pass
        else:
            return st.from_regex(pattern, fullmatch=True).filter(lambda s: low <= len(s) <= high)
    return st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
        min_size=low,
        max_size=max(low, min(high, 24)),
    )
