"""Payment providers: the one interface automatic collection charges through, a registry by
provider name, and the built-in simulated provider used by tests and the demo.

A provider keeps the card or bank account; Tallybook keeps only the provider's token for it
and sends every charge with an idempotency key, so a charge sent twice is charged once.
Real providers are plugged in with TALLYBOOK_PAYMENT_PROVIDERS="name=package.module:factory"
(comma separated); the factory takes no argument and reads its own credentials, which never
reach the database.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Protocol, runtime_checkable


class ChargeStatus(StrEnum):
    APPROVED = "approved"  # the money is taken
    DECLINED = "declined"  # the customer's bank said no (card declined, no funds, mandate)
    FAILED = "failed"  # the charge did not happen for a technical reason; no money moved


@dataclass(frozen=True)
class ChargeResult:
    status: ChargeStatus
    provider_reference: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


class ProviderUnavailable(Exception):
    """The provider gave no answer (timeout, connection lost): the charge may or may not have
    happened. The caller must ask again with the same idempotency key, never a new one."""


@runtime_checkable
class PaymentProvider(Protocol):
    name: str

    def charge(
        self,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        description: str,
    ) -> ChargeResult:
        """Take `amount_minor` from the payment method behind `token`. The same idempotency
        key must always answer the same result and move money at most once."""
        ...


class UnknownProvider(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown payment provider {self.name!r}; known: {', '.join(self.known)}"


class ProviderRegistry:
    """Payment providers by name; a payment method names the provider that holds it."""

    def __init__(self, providers: Mapping[str, PaymentProvider] | None = None) -> None:
        self._providers: dict[str, PaymentProvider] = dict(providers or {})

    def register(self, name: str, provider: PaymentProvider) -> None:
        self._providers[name] = provider

    def get(self, name: str) -> PaymentProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProvider(name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def names(self) -> list[str]:
        return sorted(self._providers)


# -- the simulated provider -------------------------------------------------------------------

_ATTEMPT = re.compile(r":(\d+)$")
_FAIL_THEN_OK = re.compile(r"^sim_[a-z]+_fail_then_ok_(\d+)$")
_LIMIT = re.compile(r"^sim_[a-z]+_limit_(\d+)$")
_DECLINES = {
    "sim_card_declined": ("card_declined", "The card was declined."),
    "sim_card_insufficient_funds": ("insufficient_funds", "The card has insufficient funds."),
    "sim_card_expired": ("expired_card", "The card has expired."),
    "sim_sepa_declined": ("mandate_revoked", "The SEPA mandate was revoked by the debtor."),
    "sim_ach_declined": ("account_closed", "The bank account is closed."),
}


def attempt_of(idempotency_key: str) -> int:
    """The attempt number a collection key ends with ('inv_...:3' is attempt 3); else 1."""
    match = _ATTEMPT.search(idempotency_key)
    return int(match.group(1)) if match else 1


class SimulatedProvider:
    """A provider that decides by rule, deterministically, from the token, the amount and the
    attempt number at the end of the idempotency key (`<invoice id>:<attempt>`):

    - `sim_card_ok`, `sim_sepa_ok`, `sim_ach_ok` (any `sim_<kind>_ok`): approved.
    - `sim_card_declined`: declined, `card_declined`; `sim_card_insufficient_funds`: declined,
      `insufficient_funds`; `sim_card_expired`: declined, `expired_card`;
      `sim_sepa_declined`: declined, `mandate_revoked`; `sim_ach_declined`: declined,
      `account_closed`.
    - `sim_card_fail`: failed, `processing_error`, every time.
    - `sim_card_fail_then_ok_N` (any kind): failed, `processing_error`, for attempts 1 to N,
      approved from attempt N + 1 (`sim_card_fail_then_ok_2` is paid on the third attempt).
    - `sim_card_limit_M` (any kind): approved up to M minor units, above that declined,
      `insufficient_funds`.
    - `sim_card_timeout`: no answer at all (ProviderUnavailable): the outcome stays unknown.
    - any other token: declined, `invalid_payment_method`; an amount of zero or less: failed,
      `invalid_amount`.

    The same idempotency key always gets the same answer and the same provider reference, so
    a re-sent charge is never a second charge. Nothing depends on memory: every process
    answers alike. With `keep_journal` it also notes each key it was sent (for tests) and,
    like a real provider, refuses a key reused with other parameters.
    """

    name = "simulated"

    def __init__(self, *, keep_journal: bool = False) -> None:
        self.keep_journal = keep_journal
        self.sent_keys: list[str] = []
        self._charged: dict[str, tuple[tuple[str, int, str], ChargeResult]] = {}
        self._lock = threading.Lock()

    def charge(
        self,
        token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        description: str,
    ) -> ChargeResult:
        if token == "sim_card_timeout":
            raise ProviderUnavailable("the simulated provider did not answer (sim_card_timeout)")
        result = self.decide(token, amount_minor, currency, idempotency_key)
        if not self.keep_journal:
            return result
        parameters = (token, amount_minor, currency)
        with self._lock:
            self.sent_keys.append(idempotency_key)
            seen = self._charged.get(idempotency_key)
            if seen is None:
                self._charged[idempotency_key] = (parameters, result)
                return result
        if seen[0] != parameters:
            return ChargeResult(
                ChargeStatus.FAILED,
                None,
                "idempotency_key_reused",
                "This idempotency key was used for another charge.",
            )
        return seen[1]

    @property
    def charged_keys(self) -> list[str]:
        """Keys of charges that moved money (approved), each once however often it was sent."""
        with self._lock:
            return [k for k, (_, r) in self._charged.items() if r.status is ChargeStatus.APPROVED]

    @staticmethod
    def decide(token: str, amount_minor: int, currency: str, idempotency_key: str) -> ChargeResult:
        """The rule itself: a pure function of its arguments."""
        reference = (
            "sim_ch_"
            + hashlib.sha256(
                f"{idempotency_key}|{token}|{amount_minor}|{currency}".encode()
            ).hexdigest()[:24]
        )
        if amount_minor <= 0:
            return ChargeResult(
                ChargeStatus.FAILED, None, "invalid_amount", "The amount must be positive."
            )
        if re.fullmatch(r"sim_[a-z]+_ok", token):
            return ChargeResult(ChargeStatus.APPROVED, reference)
        if token in _DECLINES:
            code, message = _DECLINES[token]
            return ChargeResult(ChargeStatus.DECLINED, reference, code, message)
        if token == "sim_card_fail":
            return _processing_error()
        fail_then_ok = _FAIL_THEN_OK.match(token)
        if fail_then_ok:
            if attempt_of(idempotency_key) <= int(fail_then_ok.group(1)):
                return _processing_error()
            return ChargeResult(ChargeStatus.APPROVED, reference)
        limit = _LIMIT.match(token)
        if limit:
            if amount_minor <= int(limit.group(1)):
                return ChargeResult(ChargeStatus.APPROVED, reference)
            return ChargeResult(
                ChargeStatus.DECLINED,
                reference,
                "insufficient_funds",
                "The card has insufficient funds.",
            )
        return ChargeResult(
            ChargeStatus.DECLINED,
            None,
            "invalid_payment_method",
            "The provider does not know this payment method.",
        )


def _processing_error() -> ChargeResult:
    return ChargeResult(
        ChargeStatus.FAILED,
        None,
        "processing_error",
        "The provider could not process the charge; nothing was taken.",
    )


# -- the registry the edges use ---------------------------------------------------------------


def _load(spec: str) -> tuple[str, PaymentProvider]:
    name, sep, target = spec.partition("=")
    module_name, colon, attribute = target.strip().partition(":")
    if not sep or not colon or not name.strip():
        raise ValueError(
            f"TALLYBOOK_PAYMENT_PROVIDERS: {spec!r} is not name=package.module:factory"
        )
    factory: Callable[[], PaymentProvider] = getattr(
        importlib.import_module(module_name), attribute
    )
    return name.strip(), factory()


@lru_cache(maxsize=1)
def default_registry() -> ProviderRegistry:
    """The simulated provider and those named in TALLYBOOK_PAYMENT_PROVIDERS, made once per
    process."""
    registry = ProviderRegistry({"simulated": SimulatedProvider()})
    for spec in os.environ.get("TALLYBOOK_PAYMENT_PROVIDERS", "").split(","):
        if spec.strip():
            registry.register(*_load(spec.strip()))
    return registry
