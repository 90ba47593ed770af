"""Payment methods: provider tokens, one default per customer, never a card number."""

from __future__ import annotations

import pytest
from conftest import make_org
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tallybook.db.models import AuditEvent, Customer, PaymentMethod
from tallybook.services import customers, payment_methods
from tallybook.services.base import (
    Actor,
    Conflict,
    Database,
    Forbidden,
    InvalidInput,
    NotFound,
    Role,
)

VISA = "4242424242424242"


def with_customer(db: Database) -> tuple[Actor, Customer]:
    actor = make_org(db)
    customer = customers.create_customer(
        db, actor, {"legal_name": "Kanzlei Roth", "country": "DE", "currency": "EUR"}
    )
    return actor, customer


def attach(db: Database, actor: Actor, customer: Customer, token: str, **more: object):  # type: ignore[no-untyped-def]
    return payment_methods.attach_payment_method(
        db, actor, customer.id, {"provider": "simulated", "token": token, **more}
    )


def luhn_complete(body: str) -> str:
    """The body followed by the Luhn check digit that makes it a valid card number."""
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return body + str((10 - total % 10) % 10)


def test_one_default_per_customer(db: Database) -> None:
    actor, customer = with_customer(db)
    first = attach(db, actor, customer, "sim_card_ok", label="Visa ending 4242")
    second = attach(db, actor, customer, "sim_sepa_ok", kind="sepa_debit")
    assert (first.is_default, second.is_default) == (True, False)
    assert second.label == "SEPA Direct Debit"
    third = attach(db, actor, customer, "sim_ach_ok", kind="ach_debit", default=True)
    listed = payment_methods.list_payment_methods(db, actor, customer.id)
    assert [(m.id, m.is_default) for m in listed] == [
        (first.id, False),
        (second.id, False),
        (third.id, True),
    ]
    payment_methods.set_default_payment_method(db, actor, first.id, customer_id=customer.id)
    listed = payment_methods.list_payment_methods(db, actor, customer.id)
    assert [m.id for m in listed if m.is_default] == [first.id]
    removed = payment_methods.detach_payment_method(db, actor, first.id)
    assert removed.detached_at is not None and not removed.is_default
    listed = payment_methods.list_payment_methods(db, actor, customer.id)
    assert [m.id for m in listed] == [second.id, third.id]
    assert not any(m.is_default for m in listed)  # never switches cards on its own
    every = payment_methods.list_payment_methods(db, actor, customer.id, include_detached=True)
    assert len(every) == 3
    with pytest.raises(Conflict):
        payment_methods.detach_payment_method(db, actor, first.id)
    with pytest.raises(Conflict):
        payment_methods.set_default_payment_method(db, actor, first.id)
    with db.reading() as session:
        actions = list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.entity_id == first.id)
                .order_by(AuditEvent.created_at)
            )
        )
    assert actions == [
        "payment_method.attached",
        "payment_method.made_default",
        "payment_method.detached",
    ]


@pytest.mark.parametrize(
    ("values", "field", "reason"),
    [
        ({"token": "sim_card_ok"}, "provider", "is required"),
        ({"provider": "stripe", "token": "x"}, "provider", "not a configured payment provider"),
        ({"provider": "simulated"}, "token", "is required"),
        ({"provider": "simulated", "token": "tok 1"}, "token", "no spaces"),
        ({"provider": "simulated", "token": "t" * 201}, "token", "at most 200"),
        ({"provider": "simulated", "token": "t", "kind": "paypal"}, "kind", "one of card"),
        ({"provider": "simulated", "token": "t", "label": "L" * 101}, "label", "at most 100"),
        ({"provider": "simulated", "token": "t", "default": "yes"}, "default", "true or false"),
        ({"provider": "simulated", "token": "t", "cvc": "123"}, "cvc", "not a payment method"),
    ],
)
def test_bad_input_names_the_field(
    db: Database, values: dict[str, object], field: str, reason: str
) -> None:
    actor, customer = with_customer(db)
    with pytest.raises(InvalidInput) as error:
        payment_methods.attach_payment_method(db, actor, customer.id, values)
    assert error.value.field == field and reason in error.value.detail


def test_the_same_token_twice_is_refused(db: Database) -> None:
    actor, customer = with_customer(db)
    first = attach(db, actor, customer, "sim_card_ok")
    with pytest.raises(Conflict) as error:
        attach(db, actor, customer, "sim_card_ok")
    assert first.id in error.value.detail and error.value.field == "token"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token", VISA),
        ("token", "4242 4242 4242 4242"),
        ("token", "tok_4000-0566-5566-5556"),
        ("label", "Visa 4111111111111111"),
        ("label", "Amex 3782 822463 10005"),
        ("provider", "simulated-" + VISA),
    ],
)
def test_card_numbers_are_refused_and_never_reach_the_database(
    db: Database, field: str, value: str
) -> None:
    actor, customer = with_customer(db)
    values = {"provider": "simulated", "token": "sim_card_ok", "label": "Visa ending 4242"}
    values[field] = value
    with pytest.raises(InvalidInput) as error:
        payment_methods.attach_payment_method(db, actor, customer.id, values)
    assert error.value.field == field and "card number" in error.value.detail
    digits = "".join(c for c in value if c.isdigit())
    assert digits not in error.value.detail.replace(" ", "").replace("-", "")
    with db.reading() as session:
        stored = [
            text
            for m in session.scalars(
                select(PaymentMethod).where(PaymentMethod.organization_id == actor.organization_id)
            )
            for text in (m.token, m.label, m.provider)
        ] + [
            str(e.data)
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.organization_id == actor.organization_id)
            )
        ]
    assert stored and all(digits not in t.replace(" ", "").replace("-", "") for t in stored)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.integers(12, 18).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)),
    prefix=st.sampled_from(["", "tok_", "pm_", "card:"]),
    field=st.sampled_from(["token", "label"]),
)
def test_every_luhn_valid_card_number_is_refused(
    db: Database, body: str, prefix: str, field: str
) -> None:
    actor = Actor("org_does_not_matter", None, Role.ADMIN)
    values = {"provider": "simulated", "token": "sim_card_ok", field: prefix + luhn_complete(body)}
    with pytest.raises(InvalidInput) as error:
        payment_methods.attach_payment_method(db, actor, "cus_x", values)
    assert error.value.field == field


def test_roles_and_the_tenancy_wall(db: Database) -> None:
    actor, customer = with_customer(db)
    method = attach(db, actor, customer, "sim_card_ok")
    viewer = Actor(actor.organization_id, None, Role.VIEWER)
    assert [m.id for m in payment_methods.list_payment_methods(db, viewer, customer.id)] == [
        method.id
    ]
    with pytest.raises(Forbidden):
        attach(db, viewer, customer, "sim_card_declined")
    stranger = make_org(db)
    with pytest.raises(NotFound):
        attach(db, stranger, customer, "sim_card_declined")
    with pytest.raises(NotFound):
        payment_methods.list_payment_methods(db, stranger, customer.id)
    with pytest.raises(NotFound):
        payment_methods.set_default_payment_method(db, stranger, method.id)
    with pytest.raises(NotFound):
        payment_methods.detach_payment_method(db, stranger, method.id)
    # Through another customer's address the method is not there either.
    other = customers.create_customer(
        db, actor, {"legal_name": "Other", "country": "DE", "currency": "EUR"}
    )
    with pytest.raises(NotFound):
        payment_methods.detach_payment_method(db, actor, method.id, customer_id=other.id)
    assert payment_methods.list_payment_methods(db, actor, customer.id)[0].detached_at is None
