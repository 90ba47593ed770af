"""The payment-provider interface, its registry and the simulated provider's rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.providers.payments import (
    ChargeStatus,
    PaymentProvider,
    ProviderRegistry,
    ProviderUnavailable,
    SimulatedProvider,
    UnknownProvider,
    attempt_of,
    default_registry,
)


def charge(token: str, amount: int = 11900, key: str = "inv_1:1", provider=None):  # type: ignore[no-untyped-def]
    provider = provider or SimulatedProvider()
    return provider.charge(token, amount, "EUR", key, "Invoice INV-1")


@pytest.mark.parametrize("token", ["sim_card_ok", "sim_sepa_ok", "sim_ach_ok"])
def test_ok_tokens_are_approved_with_a_provider_reference(token: str) -> None:
    result = charge(token)
    assert result.status is ChargeStatus.APPROVED
    assert result.provider_reference and result.provider_reference.startswith("sim_ch_")
    assert (result.failure_code, result.failure_message) == (None, None)


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("sim_card_declined", "card_declined"),
        ("sim_card_insufficient_funds", "insufficient_funds"),
        ("sim_card_expired", "expired_card"),
        ("sim_sepa_declined", "mandate_revoked"),
        ("sim_ach_declined", "account_closed"),
        ("tok_from_elsewhere", "invalid_payment_method"),
    ],
)
def test_declining_tokens_say_why(token: str, code: str) -> None:
    result = charge(token)
    assert (result.status, result.failure_code) == (ChargeStatus.DECLINED, code)
    assert result.failure_message


def test_a_failing_token_fails_every_time_and_an_empty_amount_fails() -> None:
    for attempt in (1, 2, 9):
        result = charge("sim_card_fail", key=f"inv_1:{attempt}")
        assert (result.status, result.failure_code) == (ChargeStatus.FAILED, "processing_error")
    assert charge("sim_card_ok", amount=0).failure_code == "invalid_amount"


def test_fail_then_ok_counts_attempts_from_the_idempotency_key() -> None:
    outcomes = [charge("sim_card_fail_then_ok_2", key=f"inv_7:{n}").status for n in (1, 2, 3, 4)]
    assert outcomes == [
        ChargeStatus.FAILED,
        ChargeStatus.FAILED,
        ChargeStatus.APPROVED,
        ChargeStatus.APPROVED,
    ]
    # Another process (a new provider object) answers alike: nothing is remembered.
    assert charge("sim_card_fail_then_ok_2", key="inv_7:3").status is ChargeStatus.APPROVED
    assert attempt_of("inv_7:12") == 12 and attempt_of("no-attempt") == 1


def test_a_limit_token_approves_up_to_its_amount() -> None:
    assert charge("sim_card_limit_5000", amount=5000).status is ChargeStatus.APPROVED
    over = charge("sim_card_limit_5000", amount=5001)
    assert (over.status, over.failure_code) == (ChargeStatus.DECLINED, "insufficient_funds")


def test_a_timeout_token_gives_no_answer() -> None:
    with pytest.raises(ProviderUnavailable):
        charge("sim_card_timeout")


def test_a_resent_key_gets_the_same_answer_and_moves_money_once() -> None:
    provider = SimulatedProvider(keep_journal=True)
    first = charge("sim_card_ok", key="inv_9:1", provider=provider)
    again = charge("sim_card_ok", key="inv_9:1", provider=provider)
    assert first == again
    assert provider.sent_keys == ["inv_9:1", "inv_9:1"]
    assert provider.charged_keys == ["inv_9:1"]
    reused = charge("sim_card_ok", amount=1, key="inv_9:1", provider=provider)
    assert (reused.status, reused.failure_code) == (ChargeStatus.FAILED, "idempotency_key_reused")
    assert provider.charged_keys == ["inv_9:1"]


@given(
    st.sampled_from(
        [
            "sim_card_ok",
            "sim_card_declined",
            "sim_card_fail",
            "sim_card_fail_then_ok_3",
            "sim_card_limit_10000",
            "anything",
        ]
    ),
    st.integers(-5, 10**9),
    st.integers(1, 20),
)
def test_the_answer_is_a_function_of_token_amount_and_key(
    token: str, amount: int, attempt: int
) -> None:
    key = f"inv_x:{attempt}"
    answers = {SimulatedProvider().charge(token, amount, "EUR", key, "d") for _ in range(3)}
    assert len(answers) == 1
    [answer] = answers
    if answer.status is ChargeStatus.APPROVED:
        assert answer.provider_reference and not answer.failure_code
    else:
        assert answer.failure_code


def test_the_registry_finds_providers_by_name() -> None:
    registry = ProviderRegistry()
    simulated = SimulatedProvider()
    registry.register("simulated", simulated)
    assert registry.get("simulated") is simulated and "simulated" in registry
    assert isinstance(simulated, PaymentProvider)
    with pytest.raises(UnknownProvider) as error:
        registry.get("stripe")
    assert "stripe" in str(error.value) and "simulated" in str(error.value)
    assert "simulated" in default_registry()
