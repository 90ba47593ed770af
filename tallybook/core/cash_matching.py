"""Cash application: propose which open invoices each incoming bank statement line pays.

Pure: statement lines and open invoices in, one proposal per line out, each either safe to post
automatically or sent to the review queue with the reasons a clerk needs.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import product

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA
from stdnum import iso11649

from tallybook.core.money import MoneyError, format_minor

__all__ = [
    "DEFAULT_THRESHOLD",
    "Allocation",
    "IncomingLine",
    "OpenInvoice",
    "Proposal",
    "match_lines",
]

DEFAULT_THRESHOLD = 90
MAX_SUBSET_CANDIDATES = 20  # invoices of one customer searched for a combination
MAX_ASSIGNMENTS = 4096  # readings of several typo'd invoice numbers tried against the amount
MAX_PAYER_CUSTOMERS = 5  # an account shared by more customers (a payment provider) says nothing
NAME_MATCH = 90  # payer name at least this close to a customer's name supports that customer
NAME_FAR = 70  # ...and a named customer this far from it, while another matches, is contradicted


@dataclass(frozen=True)
class OpenInvoice:
    id: str
    number: str
    customer_id: str
    customer_name: str
    currency: str
    amount_due_minor: int
    issue_date: date
    due_date: date
    reference: str | None
    payer_accounts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class IncomingLine:
    key: str
    amount_minor: int
    currency: str
    booking_date: date
    payer_name: str | None
    payer_account: str | None
    remittance_text: str | None
    creditor_reference: str | None
    referred_documents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Allocation:
    invoice_id: str
    amount_minor: int


@dataclass(frozen=True)
class Proposal:
    line_key: str
    customer_id: str | None
    allocations: tuple[Allocation, ...]
    unapplied_minor: int
    confidence: int
    method: str
    reasons: tuple[str, ...]
    auto: bool


# How surely the remittance identifies an invoice; lower is surer.
_REFERENCE, _NUMBER, _TYPO1, _TYPO2 = 0, 1, 2, 3
# What the payer's account and name say about an invoice's customer; higher is better.
_CONTRADICT, _NO_SUPPORT, _NAME, _ACCOUNT = 0, 1, 2, 3

_WORD = re.compile(r"[0-9A-Za-z]+")
_RUN = re.compile(r"[A-Z]+|[0-9]+")
_RF_HEAD = re.compile(r"RF[0-9]{2}")
_RF_MAX = 25
_LEGAL_FORMS = frozenset(
    "AG AB AS BV CO CORP CORPORATION COMPANY GMBH INC INCORPORATED KG LLC LLP LP LTD LIMITED "
    "NV OHG OY PLC SA SARL SAS SE SL SPA SRL UG".split()
)


def match_lines(
    lines: Sequence[IncomingLine],
    invoices: Sequence[OpenInvoice],
    *,
    threshold: int = DEFAULT_THRESHOLD,
) -> list[Proposal]:
    """One proposal per line, in line order.

    Every line is first judged against the full open amounts; then lines take invoice balances in
    order of that confidence (surest first), each judged again against what earlier lines left,
    so no invoice is ever allocated more than it still has open.
    """
    if not 0 <= threshold <= 100:
        raise ValueError(f"threshold: {threshold} is not between 0 and 100")
    book = _Book(invoices)
    evidence = [book.read(line) for line in lines]
    first = [book.decide(found, explain=False).confidence for found in evidence]
    order = sorted(range(len(lines)), key=lambda position: -first[position])
    proposals: list[Proposal | None] = [None] * len(lines)
    for position in order:
        verdict = book.decide(evidence[position], explain=True)
        for index, amount in verdict.allocations:
            book.take(index, amount)
        proposals[position] = verdict.proposal(book, lines[position], threshold)
    return proposals  # type: ignore[return-value]


# -- reading a line --------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def _unpad(word: str) -> str:
    """Letters and digit groups without leading zeros: 'INV2026000123' typed as '2026 123'."""
    return "".join(
        (run.lstrip("0") or "0") if run[0].isdigit() else run for run in _RUN.findall(word)
    )


def _number_keys(number: str) -> tuple[str, str]:
    words = _WORD.findall(number.upper())
    return "".join(words), "".join(_unpad(word) for word in words)


def _deletions(text: str) -> set[str]:
    """The text and every text one character shorter: the symmetric-delete neighbourhood."""
    found = {text}
    for position in range(len(text)):
        found.add(text[:position] + text[position + 1 :])
    return found


def _name_key(name: str) -> str:
    """A company name as compared: ASCII capitals, no punctuation, no legal form."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().upper()
    words = re.findall(r"[A-Z0-9]+", folded.replace(".", ""))
    kept = [word for word in words if word not in _LEGAL_FORMS]
    return " ".join(kept or words)


def _compact_account(account: str | None) -> str | None:
    if not account:
        return None
    return "".join(account.split()).upper() or None


@dataclass
class _Mention:
    """One invoice number or RF reference the payer wrote, and the invoices it may mean."""

    shown: str
    kind: str  # "rf" or "number"
    source: str
    exact: tuple[int, ...]
    forms: tuple[str, ...]  # what to search the typo neighbourhood with
    near: dict[int, int] | None = None  # invoice -> edits, for mentions with no exact match


@dataclass
class _Evidence:
    line: IncomingLine
    mentions: list[_Mention]
    account_customers: frozenset[str]
    account: str | None
    names: dict[str, int]  # customer -> how close the payer name is to the customer's
    notes: list[str]  # things the text says that no open invoice explains
    doubtful: bool  # the text names something we cannot square with an open invoice


@dataclass
class _Verdict:
    allocations: list[tuple[int, int]]
    customer: str | None
    confidence: int
    safe: bool
    method: str
    reasons: list[str]

    def proposal(self, book: _Book, line: IncomingLine, threshold: int) -> Proposal:
        allocated = sum(amount for _, amount in self.allocations)
        received = max(line.amount_minor, 0)
        return Proposal(
            line_key=line.key,
            customer_id=self.customer,
            allocations=tuple(
                Allocation(book.invoices[index].id, amount) for index, amount in self.allocations
            ),
            unapplied_minor=received - allocated,
            confidence=max(0, min(100, self.confidence)),
            method=self.method,
            reasons=tuple(self.reasons),
            auto=bool(self.allocations) and self.safe and self.confidence >= threshold,
        )


def _nothing(reasons: list[str], customer: str | None = None, confidence: int = 0) -> _Verdict:
    return _Verdict([], customer, confidence, False, "none", reasons)


class _Names:
    """Customers by name, for payers who give a name but no known account."""

    def __init__(self, names: dict[str, str]) -> None:
        self.keys = {customer: _name_key(name) for customer, name in names.items()}
        self.by_key: dict[str, list[str]] = {}
        self.by_word: dict[str, list[str]] = {}
        for customer, key in self.keys.items():
            self.by_key.setdefault(key, []).append(customer)
            for word in set(key.split()):
                if len(word) >= 3:
                    self.by_word.setdefault(word, []).append(customer)
        self.cache: dict[str, dict[str, int]] = {}

    def scores(self, payer_name: str | None) -> dict[str, int]:
        if not payer_name:
            return {}
        known = self.cache.get(payer_name)
        if known is not None:
            return known
        key = _name_key(payer_name)
        candidates = set(self.by_key.get(key, ()))
        words = [word for word in set(key.split()) if len(word) >= 3]
        # A word that half the customers share ("services") does not narrow anything down.
        for word in words:
            sharing = self.by_word.get(word, ())
            if len(sharing) <= 500:
                candidates.update(sharing)
        found: dict[str, int] = {}
        if candidates:
            pool = {customer: self.keys[customer] for customer in candidates}
            for _, score, customer in process.extract(
                key, pool, scorer=fuzz.token_sort_ratio, score_cutoff=60, limit=5
            ):
                found[customer] = int(score)
        self.cache[payer_name] = found
        return found


class _Book:
    """The open invoices, indexed once, and what is still open on each as lines take it."""

    def __init__(self, invoices: Sequence[OpenInvoice]) -> None:
        self.invoices = list(invoices)
        self.currency: list[str] = []
        self.remaining: list[int] = []
        self.compact: list[str] = []
        self.unpadded: list[str] = []
        self.reference: list[str | None] = []
        self.by_number: dict[str, list[int]] = {}
        self.by_reference: dict[str, list[int]] = {}
        self.near: dict[str, list[int]] = {}
        self.customer_name: dict[str, str] = {}
        self.open_of: dict[tuple[str, str], list[int]] = {}
        self.by_amount: dict[tuple[str, str], dict[int, list[int]]] = {}
        self.account_customers: dict[str, set[str]] = {}
        number_lengths: set[int] = set()
        reference_lengths: set[int] = set()
        seen: set[str] = set()
        for index, invoice in enumerate(self.invoices):
            if invoice.id in seen:
                raise ValueError(f"invoices: invoice id {invoice.id!r} is given twice")
            seen.add(invoice.id)
            if invoice.amount_due_minor <= 0:
                raise ValueError(
                    f"invoice {invoice.number}: amount_due_minor must be positive, "
                    f"got {invoice.amount_due_minor}"
                )
            currency = invoice.currency.upper()
            self.currency.append(currency)
            self.remaining.append(invoice.amount_due_minor)
            compact, unpadded = _number_keys(invoice.number)
            self.compact.append(compact)
            self.unpadded.append(unpadded)
            variants: set[str] = set()
            for key in {compact, unpadded} - {""}:
                self.by_number.setdefault(key, []).append(index)
                number_lengths.add(len(key))
                variants |= _deletions(key)
            reference = iso11649.compact(invoice.reference) if invoice.reference else None
            if reference and not iso11649.is_valid(reference):
                raise ValueError(
                    f"invoice {invoice.number}: reference {invoice.reference!r} is not a valid "
                    "ISO 11649 creditor reference"
                )
            self.reference.append(reference)
            if reference:
                self.by_reference.setdefault(reference, []).append(index)
                reference_lengths.add(len(reference))
                variants |= _deletions(reference[4:])
            for variant in variants:
                self.near.setdefault(variant, []).append(index)
            customer = invoice.customer_id
            self.customer_name.setdefault(customer, invoice.customer_name)
            self.open_of.setdefault((customer, currency), []).append(index)
            bucket = self.by_amount.setdefault((customer, currency), {})
            bucket.setdefault(invoice.amount_due_minor, []).append(index)
            for account in invoice.payer_accounts:
                self.account_customers.setdefault(account.upper(), set()).add(customer)
        for indices in self.open_of.values():
            indices.sort(key=self._age)
        self.window_lengths = {
            length + step for length in number_lengths for step in (-1, 0, 1)
        }
        self.longest_window = max(number_lengths, default=0) + 1
        self.reference_lengths = {
            length + step for length in reference_lengths for step in (-1, 0, 1)
        }
        self.names = _Names(self.customer_name)

    def _age(self, index: int) -> tuple[date, date, str]:
        invoice = self.invoices[index]
        return invoice.due_date, invoice.issue_date, invoice.number

    def take(self, index: int, amount: int) -> None:
        before = self.remaining[index]
        if not 0 < amount <= before:
            raise AssertionError(f"allocation of {amount} exceeds the {before} still open")
        after = before - amount
        self.remaining[index] = after
        invoice = self.invoices[index]
        bucket = self.by_amount[(invoice.customer_id, self.currency[index])]
        bucket[before].remove(index)
        if not bucket[before]:
            del bucket[before]
        if after:
            bucket.setdefault(after, []).append(index)

    # -- evidence that does not change as balances are taken --

    def read(self, line: IncomingLine) -> _Evidence:
        mentions: list[_Mention] = []
        notes: list[str] = []
        doubtful = False
        segments: list[tuple[str, str]] = []
        if line.creditor_reference:
            compact = "".join(line.creditor_reference.split()).upper()
            if _RF_HEAD.match(compact):
                segments.insert(0, ("structured reference", compact))
            else:
                segments.append(("reference field", line.creditor_reference))
        if line.remittance_text:
            segments.append(("remittance", line.remittance_text))
        for document in line.referred_documents:
            segments.append(("referred document", document))
        for source, text in segments:
            found, unknown = self._scan(text, source)
            mentions.extend(found)
            for reference in unknown:
                notes.append(f"{source} {reference} is not the reference of any open invoice")
                doubtful = True
        account = _compact_account(line.payer_account)
        account_customers = frozenset(self.account_customers.get(account, ())) if account else None
        if account_customers and len(account_customers) > MAX_PAYER_CUSTOMERS:
            notes.append(f"payer account {account} is shared by many customers")
            account_customers = frozenset()
        return _Evidence(
            line=line,
            mentions=mentions,
            account_customers=account_customers or frozenset(),
            account=account,
            names=self.names.scores(line.payer_name),
            notes=notes,
            doubtful=doubtful,
        )

    def _scan(self, text: str, source: str) -> tuple[list[_Mention], list[str]]:
        upper = text.upper()
        words = [(match.group(), match.start(), match.end()) for match in _WORD.finditer(upper)]
        count = len(words)
        taken = [False] * count
        mentions: list[_Mention] = []
        unknown: list[str] = []

        def shown(first: int, last: int) -> str:
            return text[words[first][1] : words[last][2]]

        for first in range(count):
            if taken[first] or not _RF_HEAD.match(words[first][0]):
                continue
            prefixes: list[tuple[str, int]] = []
            reading = ""
            for last in range(first, min(count, first + 8)):
                reading += words[last][0]
                if len(reading) > _RF_MAX + 1:
                    break
                prefixes.append((reading, last))
            mention, last, valid = self._rf_mention(prefixes, source, shown)
            if mention is not None:
                mentions.append(mention)
            elif valid is not None:
                unknown.append(valid)
            for position in range(first, last + 1):
                taken[position] = True

        # Invoice numbers: runs of up to six words, since payers split "INV 2026 000123" freely.
        exact: list[tuple[int, int, set[int]]] = []
        loose: list[tuple[int, int, str, str]] = []
        for first in range(count):
            if taken[first]:
                continue
            reading = unpadded = ""
            digits = False
            for last in range(first, min(count, first + 6)):
                if taken[last]:
                    break
                word = words[last][0]
                reading += word
                unpadded += _unpad(word)
                digits = digits or not word.isalpha()
                if len(unpadded) > self.longest_window:
                    break
                if not digits:
                    continue
                hits = set(self.by_number.get(reading, ())) | set(
                    self.by_number.get(unpadded, ())
                )
                if hits:
                    exact.append((first, last, hits))
                elif (
                    len(reading) in self.window_lengths or len(unpadded) in self.window_lengths
                ):
                    loose.append((first, last, reading, unpadded))
        # The longest exact reading wins; shorter readings inside it are the same mention.
        exact.sort(key=lambda found: (found[0] - found[1], found[0]))
        for first, last, hits in exact:
            if any(taken[first : last + 1]):
                continue
            for position in range(first, last + 1):
                taken[position] = True
            forms = tuple({words_form for words_form in self._forms(words, first, last)})
            mentions.append(
                _Mention(shown(first, last), "number", source, tuple(sorted(hits)), forms)
            )
        # Overlapping inexact readings are alternatives for one mention, searched together.
        loose = [found for found in loose if not any(taken[found[0] : found[1] + 1])]
        loose.sort()
        cluster: list[tuple[int, int, str, str]] = []
        for found in [*loose, None]:
            if cluster and (found is None or found[0] > max(item[1] for item in cluster)):
                near = self._near_numbers(
                    {form for item in cluster for form in item[2:] if form}, keep=None
                )
                if near:
                    start = cluster[0][0]
                    end = max(item[1] for item in cluster)
                    best = min(near.values())
                    mentions.append(
                        _Mention(
                            shown(start, end),
                            "number",
                            source,
                            (),
                            tuple({form for item in cluster for form in item[2:]}),
                            near={index: edits for index, edits in near.items() if edits == best}
                            | near,
                        )
                    )
                cluster = []
            if found is not None:
                cluster.append(found)
        return mentions, unknown

    def _forms(self, words: list[tuple[str, int, int]], first: int, last: int) -> set[str]:
        reading = "".join(words[position][0] for position in range(first, last + 1))
        return {reading, "".join(_unpad(words[p][0]) for p in range(first, last + 1))}

    def _rf_mention(
        self, prefixes: list[tuple[str, int]], source: str, shown
    ) -> tuple[_Mention | None, int, str | None]:
        """The RF reference at the start of `prefixes`: exact, one edit from a known one (its
        check digits failing), or valid but unknown. Returns the mention, its last word, and
        the valid-but-unknown reference."""
        first = prefixes[0][1]
        for reading, last in reversed(prefixes):
            hits = self.by_reference.get(reading)
            if hits:
                return (
                    _Mention(shown(first, last), "rf", source, tuple(hits), (reading,)),
                    last,
                    None,
                )
        near: dict[int, int] = {}
        forms: list[str] = []
        end = first
        for reading, last in prefixes:
            if len(reading) not in self.reference_lengths or iso11649.is_valid(reading):
                continue
            found = self._near_references(reading)
            if found:
                forms.append(reading)
                end = max(end, last)
                for index, edits in found.items():
                    near[index] = min(edits, near.get(index, edits))
        if near:
            return _Mention(shown(first, end), "rf", source, (), tuple(forms), near), end, None
        for reading, last in reversed(prefixes):
            if len(reading) >= 5 and iso11649.is_valid(reading):
                return None, last, reading
        return None, first, None

    def _near_references(self, reading: str) -> dict[int, int]:
        found: dict[int, int] = {}
        for variant in _deletions(reading[4:]):
            for index in self.near.get(variant, ()):
                reference = self.reference[index]
                if reference is None or index in found:
                    continue
                edits = OSA.distance(reading, reference, score_cutoff=1)
                if edits <= 1:
                    found[index] = edits
        return found

    def _near_numbers(self, forms: Iterable[str], keep) -> dict[int, int]:
        """Invoices whose number is one or two edits from one of `forms` (keep: a filter applied
        before the edit distance is computed)."""
        forms = [form for form in forms if len(form) in self.window_lengths]
        found: dict[int, int] = {}
        checked: set[int] = set()
        for form in forms:
            for variant in _deletions(form):
                for index in self.near.get(variant, ()):
                    if index in checked or (keep is not None and not keep(index)):
                        continue
                    checked.add(index)
                    edits = min(
                        OSA.distance(each, key, score_cutoff=2)
                        for each in forms
                        for key in (self.compact[index], self.unpadded[index])
                    )
                    if edits <= 2:
                        found[index] = edits
        return found

    # -- judging a line against what is still open --

    def support(self, found: _Evidence, customer: str) -> int:
        if found.account_customers:
            return _ACCOUNT if customer in found.account_customers else _CONTRADICT
        score = found.names.get(customer, 0)
        if score >= NAME_MATCH:
            return _NAME
        if score < NAME_FAR and any(value >= NAME_MATCH for value in found.names.values()):
            return _CONTRADICT
        return _NO_SUPPORT

    def decide(self, found: _Evidence, *, explain: bool) -> _Verdict:
        line = found.line
        if line.amount_minor <= 0:
            return _nothing(["not money received: nothing to apply"])
        say = _Say(self, found, explain)
        by_text = self._from_mentions(found, say)
        if by_text is not None and by_text.safe:
            return by_text
        by_payer = self._from_payer(found, say)
        if by_payer is None:
            if by_text is not None:
                return by_text
            if found.mentions or found.doubtful:
                return _nothing(say.notes or ["the remittance names no open invoice"])
            return _nothing(say.notes + ["no invoice reference and the payer is not a known customer"])
        if by_text is None:
            if say.doubtful and by_payer.safe:
                by_payer.safe = False
                by_payer.confidence = min(by_payer.confidence, 70)
            by_payer.reasons = say.notes + by_payer.reasons
            return by_payer
        chosen_by_text = {index for index, _ in by_text.allocations}
        chosen_by_payer = {index for index, _ in by_payer.allocations}
        if by_payer.safe and chosen_by_payer and chosen_by_payer <= self._named(found):
            by_payer.reasons = by_text.reasons + by_payer.reasons
            return by_payer
        better = by_text if by_text.confidence >= by_payer.confidence else by_payer
        better.safe = False
        better.confidence = min(better.confidence, 70)
        if chosen_by_payer and chosen_by_payer != chosen_by_text and explain:
            other = by_payer if better is by_text else by_text
            better.reasons = [
                *better.reasons,
                "the amount and payer point elsewhere: " + "; ".join(other.reasons),
            ]
        return better

    def _named(self, found: _Evidence) -> set[int]:
        named: set[int] = set()
        for mention in found.mentions:
            named.update(mention.exact)
            named.update(mention.near or ())
        return named

    def _from_mentions(self, found: _Evidence, say: _Say) -> _Verdict | None:
        line = found.line
        currency = line.currency.upper()
        resolved: list[tuple[_Mention, list[tuple[int, int]]]] = []
        for mention in found.mentions:
            candidates = (
                [(index, 0) for index in mention.exact]
                if mention.exact
                else sorted((mention.near or {}).items())
            )
            in_currency = [(i, e) for i, e in candidates if self.currency[i] == currency]
            if not in_currency:
                if mention.exact:
                    say.doubt(
                        f"{mention.source} names {say.numbers(i for i, _ in candidates)}, "
                        f"billed in {self.currency[candidates[0][0]]}; the payment is in "
                        f"{currency}"
                    )
                continue
            still_open = [(i, e) for i, e in in_currency if self.remaining[i] > 0]
            if not still_open:
                if mention.exact:
                    say.doubt(
                        f"{mention.source} names {say.numbers(i for i, _ in in_currency)}, "
                        "already settled by an earlier line of this statement"
                    )
                continue
            resolved.append((mention, still_open))
        if not resolved:
            return None
        # A mention that only restates an invoice another mention names exactly adds nothing.
        certain = {options[0][0] for mention, options in resolved if mention.exact}
        resolved = [
            (mention, options)
            for mention, options in resolved
            if mention.exact or not certain.intersection(i for i, _ in options)
        ]
        distinct: list[tuple[_Mention, list[tuple[int, int]]]] = []
        for mention, options in resolved:
            if mention.exact and any(
                other.exact and other_options == options for other, other_options in distinct
            ):
                continue
            distinct.append((mention, options))
        if len(distinct) == 1:
            return self._one_named(found, say, *distinct[0])
        return self._several_named(found, say, distinct)

    def _identity(self, mention: _Mention, edits: int) -> int:
        if edits == 0:
            return _REFERENCE if mention.kind == "rf" else _NUMBER
        return _TYPO1 if edits == 1 else _TYPO2

    def _one_named(
        self, found: _Evidence, say: _Say, mention: _Mention, options: list[tuple[int, int]]
    ) -> _Verdict:
        amount = found.line.amount_minor
        currency = found.line.currency.upper()

        def fit(index: int) -> tuple[bool, int]:
            return self.remaining[index] == amount, self.support(
                found, self.invoices[index].customer_id
            )

        ambiguous: list[str] = []
        if mention.exact:
            options.sort(key=lambda option: (fit(option[0]), option[0]), reverse=True)
            chosen, edits = options[0]
            best = fit(chosen)
            for index, _ in options[1:]:
                if fit(index) >= best:
                    ambiguous.append(say.numbers([index]) + " carries the same number")
            if mention.kind == "number":
                # The number typed may be a typo that happens to be another open invoice's:
                # an invoice one or two edits away that the amount fits at least as well competes.
                exact = set(mention.exact)
                rivals = self._near_numbers(
                    mention.forms,
                    keep=lambda index: (
                        index not in exact
                        and self.currency[index] == currency
                        and self.remaining[index] == amount
                    ),
                )
                for index, rival_edits in sorted(rivals.items()):
                    rival = fit(index)
                    if rival[1] != _CONTRADICT and rival[1] >= best[1]:
                        ambiguous.append(
                            f"{say.numbers([index])}, {say.edits(rival_edits)} away, is also open "
                            f"for exactly {say.money(amount)}"
                        )
        else:
            scored = sorted(
                options, key=lambda option: (fit(option[0]), -option[1], option[0]), reverse=True
            )
            chosen, edits = scored[0]
            best = fit(chosen)
            for index, rival_edits in scored[1:]:
                if fit(index) == best:
                    ambiguous.append(
                        f"{say.numbers([index])} ({say.edits(rival_edits)} away) fits as well"
                    )
        identity = self._identity(mention, edits)
        return self._settle_one(found, say, chosen, identity, mention, ambiguous)

    def _settle_one(
        self,
        found: _Evidence,
        say: _Say,
        chosen: int,
        identity: int,
        mention: _Mention,
        ambiguous: list[str],
    ) -> _Verdict:
        amount = found.line.amount_minor
        invoice = self.invoices[chosen]
        remaining = self.remaining[chosen]
        support = self.support(found, invoice.customer_id)
        reasons = say.notes + [say.named(mention, chosen, identity)]
        if amount == remaining:
            fit = "exact"
            allocations = [(chosen, amount)]
            reasons.append(f"the amount equals the {say.due(chosen)}")
        elif amount < remaining:
            fit = "partial"
            allocations = [(chosen, amount)]
            reasons.append(f"partial payment: {say.money(amount)} of the {say.due(chosen)}")
        else:
            fit = "over"
            allocations = [(chosen, remaining)]
            reasons.append(
                f"over-payment: {say.money(amount - remaining)} more than the "
                f"{say.due(chosen)}, left unapplied as customer credit"
            )
        reasons.append(say.payer(invoice.customer_id, support))
        confidence, safe = _grade(identity, fit, support)
        method = "reference" if mention.kind == "rf" else "invoice_number"
        if fit == "over":
            # The excess may settle another invoice of the same customer the payer did not name.
            extra = self.by_amount.get((invoice.customer_id, self.currency[chosen]), {}).get(
                amount - remaining, []
            )
            extra = [index for index in extra if index != chosen]
            if len(extra) == 1:
                allocations.append((extra[0], amount - remaining))
                reasons.append(
                    f"the excess equals the {say.due(extra[0])}, which the remittance does not "
                    "name"
                )
                confidence, safe, method = min(confidence, 80), False, "combination"
        if ambiguous:
            reasons.extend(ambiguous)
            confidence, safe = min(confidence, 60), False
        if say.doubtful:
            confidence, safe = min(confidence, 70), False
        return _Verdict(allocations, invoice.customer_id, confidence, safe, method, reasons)

    def _several_named(
        self,
        found: _Evidence,
        say: _Say,
        named: list[tuple[_Mention, list[tuple[int, int]]]],
    ) -> _Verdict:
        """A combined payment: the line pays several named invoices."""
        amount = found.line.amount_minor
        reasons = list(say.notes)
        doubts: list[str] = []
        fixed: dict[int, tuple[_Mention, int]] = {}
        loose: list[tuple[_Mention, list[tuple[int, int]]]] = []
        for mention, options in named:
            if mention.exact:
                if len(options) > 1:
                    doubts.append(f"{say.numbers(i for i, _ in options)} carry the same number")
                fixed.setdefault(options[0][0], (mention, 0))
            else:
                loose.append((mention, options))
        solutions: dict[frozenset[int], dict[int, tuple[_Mention, int]]] = {}
        size = 1
        for _, options in loose:
            size *= len(options)
        if size <= MAX_ASSIGNMENTS:
            for choice in product(*(options for _, options in loose)):
                reading = dict(fixed)
                for (mention, _), (index, edits) in zip(loose, choice, strict=True):
                    if index not in reading or reading[index][1] > edits:
                        reading[index] = (mention, edits)
                key = frozenset(reading)
                if sum(self.remaining[i] for i in key) == amount and key not in solutions:
                    solutions[key] = reading
                if len(solutions) > 1:
                    break
        else:
            doubts.append("too many readings of the typo'd numbers to check against the amount")
        if len(solutions) == 1:
            reading = next(iter(solutions.values()))
            fit = "exact"
        else:
            if len(solutions) > 1:
                doubts.append("more than one reading of the named invoices adds up to the amount")
                reading = next(iter(solutions.values()))
            else:
                reading = dict(fixed)
                for mention, options in loose:
                    closest = min(edits for _, edits in options)
                    nearest = [index for index, edits in options if edits == closest]
                    if len(nearest) == 1 and nearest[0] not in reading:
                        reading[nearest[0]] = (mention, closest)
                    else:
                        doubts.append(f"{mention.source} '{mention.shown}' is unclear")
            total = sum(self.remaining[i] for i in reading)
            fit = "exact" if total == amount else "partial" if amount < total else "over"
        chosen = sorted(reading, key=self._age)
        allocations: list[tuple[int, int]] = []
        left = amount
        for index in chosen:
            part = min(left, self.remaining[index])
            if part > 0:
                allocations.append((index, part))
                left -= part
        customers = {self.invoices[index].customer_id for index in chosen}
        identity = max(self._identity(mention, edits) for mention, edits in reading.values())
        supports = {self.support(found, customer) for customer in customers}
        support = min(supports)
        for index in chosen:
            mention, edits = reading[index]
            reasons.append(say.named(mention, index, self._identity(mention, edits)))
        total = sum(self.remaining[i] for i in chosen)
        if fit == "exact":
            reasons.append(f"the amount equals their {say.money(total)} due together")
        elif fit == "partial":
            reasons.append(
                f"partial payment: {say.money(amount)} of their {say.money(total)} due together, "
                "oldest due first"
            )
        else:
            reasons.append(
                f"over-payment: {say.money(amount - total)} more than their {say.money(total)} "
                "due together, left unapplied as customer credit"
            )
        if len(customers) > 1:
            doubts.append("the named invoices belong to different customers")
            customer = None
        else:
            customer = next(iter(customers))
            reasons.append(say.payer(customer, support))
        supported = support >= _NAME
        if support == _CONTRADICT:
            confidence, safe = 55, False
        elif fit == "exact" and identity <= _NUMBER:
            confidence, safe = (98 if identity == _REFERENCE else 96), True
        elif fit == "exact":
            confidence, safe = (92, True) if supported else (80, False)
        elif fit == "over" and identity <= _NUMBER and supported:
            confidence, safe = 91, True
        else:
            confidence, safe = 70, False
        if doubts or say.doubtful:
            reasons.extend(doubts)
            confidence, safe = min(confidence, 60), False
        kinds = {mention.kind for mention, _ in reading.values()}
        method = "reference" if kinds == {"rf"} else "invoice_number"
        return _Verdict(allocations, customer, confidence, safe, method, reasons)

    def _payer_customers(self, found: _Evidence) -> tuple[list[str], str]:
        if found.account_customers:
            return sorted(found.account_customers), "account"
        close = sorted(
            (customer for customer, score in found.names.items() if score >= NAME_MATCH),
            key=lambda customer: -found.names[customer],
        )
        return close[:MAX_PAYER_CUSTOMERS], "name"

    def _from_payer(self, found: _Evidence, say: _Say) -> _Verdict | None:
        """No usable reference: the payer and the exact amount, one invoice or a combination."""
        customers, how = self._payer_customers(found)
        if not customers:
            return None
        amount = found.line.amount_minor
        currency = found.line.currency.upper()
        certain_payer = len(customers) == 1
        matches = sorted(
            (
                index
                for customer in customers
                for index in self.by_amount.get((customer, currency), {}).get(amount, ())
            ),
            key=self._age,
        )
        if matches:
            chosen = matches[0]
            customer = self.invoices[chosen].customer_id
            reasons = [
                say.payer(customer, _ACCOUNT if how == "account" else _NAME),
                f"no invoice reference; the amount equals the {say.due(chosen)} of "
                f"{say.numbers([chosen])}",
            ]
            if len(matches) == 1 and certain_payer:
                confidence, safe = (94, True) if how == "account" else (91, True)
            elif len(matches) == 1:
                confidence, safe = 80, False
                reasons.append(f"the payer could be any of {len(customers)} customers")
            else:
                confidence, safe = 60, False
                reasons.append(
                    f"{len(matches)} open invoices are due for exactly {say.money(amount)}; "
                    "the oldest is proposed"
                )
            return _Verdict(
                [(chosen, amount)], customer, confidence, safe, "amount_and_payer", reasons
            )
        for customer in customers:
            open_invoices = [
                index
                for index in self.open_of.get((customer, currency), ())
                if 0 < self.remaining[index] < amount
            ]
            if len(open_invoices) < 2:
                continue
            searched = open_invoices[:MAX_SUBSET_CANDIDATES]
            found_sets = _subset_sums([self.remaining[i] for i in searched], amount, limit=2)
            if not found_sets:
                continue
            chosen = [searched[bit] for bit in range(len(searched)) if found_sets[0] >> bit & 1]
            reasons = [
                say.payer(customer, _ACCOUNT if how == "account" else _NAME),
                f"no invoice reference; {say.numbers(chosen)} add up to exactly "
                f"{say.money(amount)}",
            ]
            if len(found_sets) > 1:
                confidence, safe = 55, False
                reasons.append(f"other combinations of open invoices also add up to the amount")
            elif len(open_invoices) > MAX_SUBSET_CANDIDATES:
                confidence, safe = 75, False
                reasons.append(
                    f"only the {MAX_SUBSET_CANDIDATES} oldest of {len(open_invoices)} open "
                    "invoices were searched"
                )
            elif not certain_payer:
                confidence, safe = 70, False
                reasons.append(f"the payer could be any of {len(customers)} customers")
            else:
                confidence, safe = (92, True) if how == "account" else (88, False)
            return _Verdict(
                [(index, self.remaining[index]) for index in chosen],
                customer,
                confidence,
                safe,
                "combination",
                reasons,
            )
        customer = customers[0] if certain_payer else None
        reasons = [
            say.payer(customers[0], _ACCOUNT if how == "account" else _NAME)
            if certain_payer
            else f"the payer could be any of {len(customers)} customers",
            f"no invoice reference, and no open invoice or combination of invoices is due for "
            f"exactly {say.money(amount)}",
        ]
        return _nothing(reasons, customer, 20)


def _grade(identity: int, fit: str, support: int) -> tuple[int, bool]:
    """Confidence, and whether it may post unreviewed, for one named invoice."""
    supported = support >= _NAME
    if support == _CONTRADICT:
        return (70 if identity == _REFERENCE else 55), False
    if identity == _REFERENCE:
        # Mod 97 check digits catch every single typo: a valid reference is the invoice.
        return {"exact": 99, "partial": 94, "over": 92}[fit], True
    if identity == _NUMBER:
        if fit == "exact":
            return (97 if supported else 93), True
        if supported:
            return (93 if fit == "partial" else 91), True
        return (75 if fit == "partial" else 72), False
    if fit == "exact":
        if identity == _TYPO1 and support == _ACCOUNT:
            return 94, True
        if identity == _TYPO1 and support == _NAME:
            return 91, True
        if identity == _TYPO2 and support == _ACCOUNT:
            return 91, True
        return (85 if supported else 78), False
    return (70 if supported else 60), False


def _subset_sums(amounts: list[int], target: int, *, limit: int) -> list[int]:
    """Bit masks of two or more amounts adding up to target (meet in the middle), at most limit."""
    half = len(amounts) // 2
    right: dict[int, list[int]] = {}
    for total, mask in _sums(amounts[half:], target):
        right.setdefault(total, []).append(mask)
    found: list[int] = []
    for total, mask in _sums(amounts[:half], target):
        for other in right.get(target - total, ()):
            combined = mask | (other << half)
            if combined.bit_count() >= 2:
                found.append(combined)
                if len(found) >= limit:
                    return found
    return found


def _sums(amounts: list[int], cap: int) -> list[tuple[int, int]]:
    sums = [(0, 0)]
    for position, amount in enumerate(amounts):
        bit = 1 << position
        sums += [(total + amount, mask | bit) for total, mask in sums if total + amount <= cap]
    return sums


class _Say:
    """Reasons in the clerk's words; silent while lines are only being ranked."""

    def __init__(self, book: _Book, found: _Evidence, explain: bool) -> None:
        self.book = book
        self.found = found
        self.explain = explain
        self.currency = found.line.currency.upper()
        self.notes: list[str] = list(found.notes) if explain else []
        self.doubtful = found.doubtful

    def doubt(self, note: str) -> None:
        self.doubtful = True
        if self.explain:
            self.notes.append(note)

    def money(self, minor: int) -> str:
        if not self.explain:
            return ""
        try:
            return format_minor(minor, self.currency)
        except MoneyError:
            return f"{minor} minor units of {self.currency}"

    def numbers(self, indices: Iterable[int]) -> str:
        if not self.explain:
            return ""
        return ", ".join(self.book.invoices[index].number for index in indices)

    def edits(self, count: int) -> str:
        return "1 typo" if count == 1 else f"{count} typos"

    def due(self, index: int) -> str:
        if not self.explain:
            return ""
        book = self.book
        text = f"{self.money(book.remaining[index])} due on {book.invoices[index].number}"
        if book.remaining[index] != book.invoices[index].amount_due_minor:
            text += " after earlier lines of this statement"
        return text

    def named(self, mention: _Mention, index: int, identity: int) -> str:
        if not self.explain:
            return ""
        invoice = self.book.invoices[index]
        if mention.kind == "rf":
            what = f"the reference of {invoice.number}"
            if identity != _REFERENCE:
                return (
                    f"{mention.source} {mention.shown!r} fails its check digits; it is one edit "
                    f"from {what}"
                )
            return f"{mention.source} {mention.shown} is {what}"
        if identity == _NUMBER:
            return f"{mention.source} names {invoice.number}"
        edits = 1 if identity == _TYPO1 else 2
        return f"{mention.source} names {invoice.number} ({self.edits(edits)}: {mention.shown!r})"

    def payer(self, customer: str, support: int) -> str:
        if not self.explain:
            return ""
        name = self.book.customer_name.get(customer, customer)
        found = self.found
        if support == _ACCOUNT:
            return f"payer account {found.account} is a known account of {name}"
        if support == _NAME:
            return f"payer name {found.line.payer_name!r} matches {name}"
        if support == _CONTRADICT:
            if found.account_customers:
                others = sorted(self.book.customer_name[c] for c in found.account_customers)
                return (
                    f"payer account {found.account} is known for {', '.join(others)}, "
                    f"not for {name}"
                )
            return f"payer name {found.line.payer_name!r} is another customer's, not {name}'s"
        return f"the payer is not known as {name}"
