"""Cash application: propose which open invoices each incoming bank statement line pays.

Pure: statement lines and open invoices in, one proposal per line out, each either safe to post
automatically or sent to the review queue with the reasons a clerk needs.

How a line is read, surest evidence first:
  - an ISO 11649 RF reference of an open invoice (its check digits catch every single typo, so a
    reference that fails them is only a clue, never trusted on its own);
  - an invoice number as printed, with spaces, slashes, dashes, without leading zeros or without
    its letters ("2026-000123"); or one or two typos away from one, when the amount and the
    payer confirm it;
  - without a usable reference: the payer, known by an account it paid from before or by its
    name, and an open invoice of that customer due for exactly the amount, or exactly one set of
    its open invoices adding up to it.
Lines take invoice balances surest first; only automatic postings use up balances while the
lines are judged, so a guess waiting for review never makes another line look certain.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import product

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from tallybook.core.money import MoneyError, format_minor

__all__ = [
    "DEFAULT_THRESHOLD",
    "Allocation",
    "ClosedInvoice",
    "IncomingLine",
    "OpenInvoice",
    "Proposal",
    "match_lines",
]

DEFAULT_THRESHOLD = 90
MAX_SUBSET_CANDIDATES = 20  # open invoices of one customer searched for a combination
MAX_ASSIGNMENTS = 4096  # readings of several typo'd invoice numbers tried against the amount
MAX_PAYER_CUSTOMERS = 5  # an account shared by more customers (a payment provider) says nothing
NAME_MATCH = 95  # a payer name at least this close to a customer's name identifies it
NAME_FAR = 70  # ...and a named customer this far from it, while another matches, is contradicted
MAX_NUMBER_WORDS = 6  # payers split "INV 2026 000 123" into this many words at most
MAX_TYPOS = 2  # how far a typed invoice number may be from the real one
CUT_NAME_LENGTHS = frozenset({27, 35})  # banks that cut payer names keep this many characters
COMMON_NAME_WORD = 400  # a word this many customer names share does not narrow the search


@dataclass(frozen=True)
class OpenInvoice:
    """An invoice with money still due. `payer_accounts` are the accounts its customer is known
    to pay from (its own list and the accounts of payments already applied)."""

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
class ClosedInvoice:
    """An invoice no longer open (paid, credited, voided, written off) whose number or reference
    a payer may still quote: paying it a second time, or mistyping an open invoice's into it.
    Without them a quoted number that is no open invoice's looks like a typo of one."""

    id: str
    number: str
    customer_id: str
    currency: str
    total_minor: int
    reference: str | None = None


@dataclass(frozen=True)
class IncomingLine:
    """One bank statement line; a positive amount is money received."""

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
    """What to do with one line. The allocations (oldest due first) and `unapplied_minor` add up
    to the money received (0 for a line that is not money received); `auto` means safe to post
    without review: allocations exist, the evidence is sure and confidence >= the threshold."""

    line_key: str
    customer_id: str | None
    allocations: tuple[Allocation, ...]
    unapplied_minor: int
    confidence: int
    method: str
    reasons: tuple[str, ...]
    auto: bool


# How surely a mention identifies an invoice; lower is surer.
_REFERENCE, _NUMBER, _TYPO1, _TYPO2 = 0, 1, 2, 3
# What the payer's account and name say about an invoice's customer; higher is better.
_CONTRADICT, _NO_SUPPORT, _NAME, _ACCOUNT = 0, 1, 2, 3

_WORD = re.compile(r"[0-9A-Z]+")
_RUN = re.compile(r"[A-Z]+|[0-9]+")
_DIGIT = re.compile(r"[0-9]")
_RF_HEAD = re.compile(r"RF[0-9]{2}")
_RF_MAX = 25
_NOT_RECEIVED = ("not money received: nothing to apply",)
_RF_DIGITS = str.maketrans(
    {letter: str(10 + at) for at, letter in enumerate(string.ascii_uppercase)}
)
_GERMAN = str.maketrans({"Ä": "AE", "Ö": "OE", "Ü": "UE"})
_LEGAL_FORMS = frozenset(
    "AB AG AS BV CO CORP CORPORATION COMPANY EG EK EURL GBR GMBH HAFTUNGSBESCHRANKT "
    "HAFTUNGSBESCHRAENKT INC "
    "INCORPORATED KG KGAA LIMITED LLC LLP LP LTD NV OG OHG OY PLC SA SARL SAS SCA SE SL SNC SPA "
    "SRL UG VOF".split()
)


def match_lines(
    lines: Sequence[IncomingLine],
    invoices: Sequence[OpenInvoice],
    *,
    threshold: int = DEFAULT_THRESHOLD,
    closed: Sequence[ClosedInvoice] = (),
) -> list[Proposal]:
    """One proposal per line, in line order. `closed` are the organisation's invoices that are
    no longer open: a line quoting one is paying it twice or mistyping another, never taken for
    a typo of an open invoice the payer also owes the same amount on.

    Lines are judged surest evidence first (exact references, then exact numbers, typo'd
    numbers, payer and amount), each against what automatic postings of earlier lines left open;
    lines left for review are judged once more after every sure line has posted. Suggestions for
    review then share what is still open, so across all proposals no invoice is allocated more
    than it has open. The result does not depend on the order of `invoices`.
    """
    if not 0 <= threshold <= 100:
        raise ValueError(f"threshold: {threshold} is not between 0 and 100")
    book = _Book(invoices, closed)
    proposals: list[Proposal | None] = [None] * len(lines)
    evidence: dict[int, _Evidence] = {}
    for position, line in enumerate(lines):
        if line.amount_minor > 0:
            evidence[position] = book.read(line)
        else:
            proposals[position] = Proposal(line.key, None, (), 0, 0, "none", _NOT_RECEIVED, False)
    order = sorted(evidence, key=lambda position: (evidence[position].tier, position))
    verdicts: list[_Verdict | None] = [None] * len(lines)
    posted = [False] * len(lines)
    for second_look in (False, True):
        for position in order:
            found = evidence[position]
            if posted[position] or (second_look and found.tier >= _TIER_NOTHING):
                continue  # nothing that another line's posting could change
            verdict = book.judge(found)
            verdicts[position] = verdict
            if verdict.allocations and verdict.safe and verdict.confidence >= threshold:
                book.post(verdict.allocations)
                posted[position] = True
    # Suggestions for review share what the automatic postings left, surest lines first.
    left = list(book.remaining)
    for position in order:
        verdict = verdicts[position]
        assert verdict is not None
        if not posted[position]:
            verdict.fit_into(left, book)
        proposals[position] = verdict.proposal(book, evidence[position], auto=posted[position])
    return proposals  # type: ignore[return-value]


# -- text ------------------------------------------------------------------------------------


def _upper_ascii(text: str, *, transliterate: bool = False) -> str:
    upper = text.upper()
    if upper.isascii():
        return upper
    if transliterate:
        upper = upper.translate(_GERMAN)
    return unicodedata.normalize("NFKD", upper).encode("ascii", "ignore").decode()


@lru_cache(maxsize=65_536)
def _unpadded_runs(word: str) -> tuple[str, ...]:
    """A word's runs of letters and of digits, digits without leading zeros."""
    return tuple(
        (run.lstrip("0") or "0") if run[0].isdigit() else run for run in _RUN.findall(word)
    )


def _number_keys(number: str) -> tuple[str, str, str | None]:
    """How an invoice number may be typed exactly: compact ('INV2026000123'), without leading
    zeros ('INV-2026-123': its groups kept apart, since 'INV 20266' is not 'INV 2026 6') and
    without its leading letters ('2026000123', only when at least six characters remain)."""
    words = _WORD.findall(_upper_ascii(number))
    compact = "".join(words)
    runs: list[str] = []
    for word in words:
        if word.isdigit():
            runs.append(word.lstrip("0") or "0")
        elif word.isalpha():
            runs.append(word)
        else:
            runs.extend(_unpadded_runs(word))
    unpadded = "-".join(runs)
    letters = len(runs[0]) if runs and runs[0].isalpha() else 0
    bare = compact[letters:] if letters else None
    if bare is not None and (len(bare) < 6 or not bare[0].isdigit()):
        bare = None
    return compact, unpadded, bare


def _lead(word: str) -> str:
    """What a word that starts an invoice number begins with: its letters, else 3 digits."""
    letters = len(word) - len(word.lstrip(string.ascii_uppercase))
    return word[:letters] if letters else word[:3]


def _rf_valid(text: str) -> bool:
    """ISO 11649: the reference, its first four characters moved to the end and its letters
    turned into numbers (A=10...), leaves 1 divided by 97."""
    if not (5 <= len(text) <= _RF_MAX and _RF_HEAD.match(text) and text.isalnum()):
        return False
    return int((text[4:] + text[:4]).translate(_RF_DIGITS)) % 97 == 1


def _compact_reference(value: str) -> str:
    return "".join(_WORD.findall(_upper_ascii(value)))


def _compact_account(account: str | None) -> str | None:
    if not account:
        return None
    return "".join(account.split()).upper() or None


def _deletions(text: str) -> set[str]:
    """The text and every text one character shorter: the symmetric-delete neighbourhood."""
    found = {text}
    for position in range(len(text)):
        found.add(text[:position] + text[position + 1 :])
    return found


def _name_key(name: str, *, transliterate: bool = False) -> str:
    """A company name as compared: ASCII capitals, no punctuation, no legal form."""
    folded = _upper_ascii(name, transliterate=transliterate).replace(".", "")
    words = _WORD.findall(folded)
    kept = [word for word in words if word not in _LEGAL_FORMS]
    return " ".join(kept or words)


def _name_keys(name: str) -> set[str]:
    """A name as written and with German umlauts spelt out (Müller and MUELLER alike)."""
    return {_name_key(name), _name_key(name, transliterate=True)} - {""}


# -- evidence --------------------------------------------------------------------------------

_TIER_RF, _TIER_NUMBER, _TIER_TYPO, _TIER_PAYER, _TIER_NOTHING, _TIER_OUTGOING = range(6)


@dataclass(frozen=True)
class _Mention:
    """One invoice number or RF reference the payer wrote, and the invoices it may mean."""

    shown: str
    kind: str  # "rf" or "number"
    source: str
    exact: tuple[int, ...]  # invoices it names exactly
    near: tuple[tuple[int, int], ...]  # (invoice, typos) when it names none exactly
    forms: tuple[str, ...]  # the compact readings, to look for look-alikes with
    closed: tuple[int, ...] = ()  # closed invoices it names exactly, when no open one


@dataclass
class _Evidence:
    line: IncomingLine
    currency: str
    amount: int
    mentions: list[_Mention]
    notes: list[str]  # what the text says that no open invoice explains
    doubtful: bool  # the text names something we cannot square with an open invoice
    account: str | None
    account_customers: frozenset[str]
    names: dict[str, int]  # customer -> how close the payer name is (only without an account)
    tier: int


class _Names:
    """Customers by name, for payers who give a name but no known account."""

    def __init__(self, names_of: dict[str, list[str]]) -> None:
        self.names_of = names_of
        self.keys_of: dict[str, list[str]] = {}
        by_word: dict[str, set[str]] = {}
        for customer, names in names_of.items():
            keys = sorted({key for name in names for key in _name_keys(name)})
            self.keys_of[customer] = keys
            for word in {word for key in keys for word in key.split()}:
                if len(word) > 2:
                    by_word.setdefault(word, set()).add(customer)
        self.by_word = {word: frozenset(customers) for word, customers in by_word.items()}
        self.cache: dict[tuple[str, int], dict[str, int]] = {}

    def sharing(self, payer_name: str | None, customer: str) -> list[str]:
        """Other customers whose names contain the payer's name when it is a single word."""
        words = _name_key(payer_name or "").split()
        if len(words) != 1:
            return []
        return sorted(self.by_word.get(words[0], frozenset()) - {customer})

    def scores(self, payer_name: str | None) -> dict[str, int]:
        """Customer -> closeness (0-100) of the payer name to its name, for close ones."""
        if not payer_name:
            return {}
        key = _name_key(payer_name)
        cut = len(payer_name.strip())
        cut = cut if cut in CUT_NAME_LENGTHS else 0
        known = self.cache.get((key, cut))
        if known is not None:
            return known
        words = sorted({word for word in key.split() if len(word) > 2})
        sets = [self.by_word[word] for word in words if word in self.by_word]
        if len(sets) >= 2:
            # Names close enough to matter share at least two of their words.
            candidates: set[str] = set()
            for at, first in enumerate(sets):
                for second in sets[at + 1 :]:
                    candidates |= first & second
        elif sets and len(sets[0]) <= COMMON_NAME_WORD:
            candidates = set(sets[0])  # one word in common: only if it narrows things down
        else:
            candidates = set()
        found: dict[str, int] = {}
        for customer in sorted(candidates):
            score = max(round(fuzz.ratio(key, known)) for known in self.keys_of[customer])
            if score >= NAME_FAR - 10:
                found[customer] = score
        if cut:
            # The bank kept only the first characters: compare with names cut the same way.
            for customer in sorted(candidates):
                for name in self.names_of[customer]:
                    for cut_key in _name_keys(name[:cut]) if len(name) > cut else ():
                        score = round(fuzz.ratio(key, cut_key))
                        if score > found.get(customer, 0):
                            found[customer] = score
        self.cache[(key, cut)] = found
        return found


class _Scan:
    """The RF references and invoice numbers in one piece of text, and what it names that is
    no open invoice's."""

    def __init__(self, book: _Book, text: str, source: str, payers: Sequence[str]) -> None:
        self.book = book
        self.source = source
        self.payers = payers
        self.mentions: list[_Mention] = []
        self.notes: list[str] = []
        self.doubtful = False
        upper = _upper_ascii(text)
        # Folding accents may change lengths; quote the folded text where it did.
        self.text = text if len(text) == len(upper) else upper
        self.spans = [(match.start(), match.end()) for match in _WORD.finditer(upper)]
        self.words = _WORD.findall(upper)
        self.taken = [False] * len(self.words)
        self.leads = [_lead(word) for word in self.words]
        if "RF" in upper:
            self._references()
        if not book.leads.isdisjoint(self.leads):
            self._exact_numbers()
            self._loose_numbers()

    def shown(self, first: int, last: int) -> str:
        return self.text[self.spans[first][0] : self.spans[last][1]]

    def doubt(self, note: str) -> None:
        self.notes.append(note)
        self.doubtful = True

    def take(self, first: int, last: int) -> None:
        for position in range(first, last + 1):
            self.taken[position] = True

    def _references(self) -> None:
        words, count = self.words, len(self.words)
        for first in range(count):
            if self.taken[first] or not _RF_HEAD.match(words[first]):
                continue
            readings: list[tuple[str, int]] = []
            reading = ""
            for last in range(first, min(count, first + 8)):
                reading += words[last]
                if len(reading) > _RF_MAX + 1:
                    break
                readings.append((reading, last))
            self.take(first, self._reference(readings))

    def _reference(self, readings: list[tuple[str, int]]) -> int:
        """Read the RF reference at the start of `readings`; returns its last word."""
        book, first = self.book, readings[0][1]
        for reading, last in reversed(readings):
            hits = book.by_reference.get(reading)
            if hits:
                mention = _Mention(self.shown(first, last), "rf", self.source, tuple(hits), (),
                                   (reading,))  # fmt: skip
                self.mentions.append(mention)
                return last
        for reading, last in reversed(readings):
            hits = book.closed_by_reference.get(reading)
            if hits:
                mention = _Mention(self.shown(first, last), "rf", self.source, (), (),
                                   (reading,), tuple(hits))  # fmt: skip
                self.mentions.append(mention)
                return last
        for reading, last in reversed(readings):
            if len(reading) >= 5 and _rf_valid(reading):
                self.doubt(f"{self.source} {reading} is not the reference of any open invoice")
                return last
        near: dict[int, int] = {}
        forms: list[str] = []
        end = first
        for reading, last in readings:
            if len(reading) in book.reference_lengths:
                found = book.near_references(reading)
                if found:
                    forms.append(reading)
                    end = max(end, last)
                    near.update(found)
        if near:
            mention = _Mention(self.shown(first, end), "rf", self.source, (),
                               tuple(sorted(near.items())), tuple(forms))  # fmt: skip
            self.mentions.append(mention)
            return end
        self.doubt(
            f"{self.source} {self.shown(first, first)!r} starts a reference that fails its "
            "check digits and is no open invoice's"
        )
        return first  # what follows may still be an invoice number

    def _exact_numbers(self) -> None:
        """Invoice numbers typed exactly, however spaced; the longest reading wins."""
        book, words, count = self.book, self.words, len(self.words)
        found: list[tuple[int, int, list[int], str]] = []
        closed: list[tuple[int, int, list[int], str]] = []
        for first in range(count):
            if self.taken[first] or self.leads[first] not in book.leads:
                continue
            reading = ""
            runs: list[str] = []
            for last in range(first, min(count, first + MAX_NUMBER_WORDS)):
                if self.taken[last]:
                    break
                reading += words[last]
                runs.extend(_unpadded_runs(words[last]))
                if sum(len(run) for run in runs) > book.longest_number:
                    break
                unpadded = "-".join(runs)
                hits = book.by_number.get(reading, []) + book.by_number.get(unpadded, [])
                if hits:
                    found.append((first, last, hits, reading))
                elif reading in book.closed_by_number or unpadded in book.closed_by_number:
                    hits = book.closed_by_number.get(reading, []) + book.closed_by_number.get(
                        unpadded, []
                    )
                    closed.append((first, last, hits, reading))
        # Open invoices first, then closed ones; the longest reading wins.
        for hits_found, is_open in ((found, True), (closed, False)):
            hits_found.sort(key=lambda hit: (hit[0] - hit[1], hit[0]))
            for first, last, hits, reading in hits_found:
                if any(self.taken[first : last + 1]):
                    continue
                self.take(first, last)
                indices = tuple(sorted(set(hits)))
                shown = self.shown(first, last)
                if is_open:
                    keys = [book.compact[index] for index in indices]
                    forms = tuple(dict.fromkeys([reading, *keys]))
                    self.mentions.append(_Mention(shown, "number", self.source, indices, (), forms))
                else:
                    forms = (reading,)
                    self.mentions.append(
                        _Mention(shown, "number", self.source, (), (), forms, indices)
                    )

    def _loose_numbers(self) -> None:
        """What reads like one of our numbers but is none exactly: a typo, or a number that is
        not open (settled, or someone else's). Only numbers that start with our letters are
        searched for typos; bare digits ('2025-000123') only count as a number not open."""
        book, words, count = self.book, self.words, len(self.words)
        loose: list[tuple[int, int, str | None]] = []
        for first in range(count):
            lead = self.leads[first]
            if self.taken[first] or lead not in book.leads:
                continue
            lettered = lead in book.letter_leads
            reading = ""
            for last in range(first, min(count, first + MAX_NUMBER_WORDS)):
                if self.taken[last]:
                    break
                reading += words[last]
                if len(reading) > book.longest_compact + MAX_TYPOS:
                    break
                # A reading cut short of the digits that follow it is not a whole number.
                if (
                    last + 1 < count
                    and words[last + 1][0].isdigit()
                    and len(reading) < book.shortest_compact - MAX_TYPOS
                ):
                    continue
                digits = sum(ch.isdigit() for ch in reading)
                if lettered and digits >= 5:
                    searchable = len(reading) in book.typo_lengths
                    loose.append((first, last, reading if searchable else None))
                elif not lettered and len(reading) in book.bare_lengths:
                    loose.append((first, last, None))
        cluster: list[tuple[int, int, str | None]] = []
        for window in [*loose, None]:
            if cluster and (window is None or window[0] > max(item[1] for item in cluster)):
                start, end = cluster[0][0], max(item[1] for item in cluster)
                forms = tuple(dict.fromkeys(item[2] for item in cluster if item[2]))
                near = book.near_numbers(forms, self.payers) if forms else ()
                if near:
                    self.mentions.append(
                        _Mention(self.shown(start, end), "number", self.source, (), near, forms)
                    )
                else:
                    self.doubt(
                        f"{self.source} names {self.shown(start, end)!r}, which is no open "
                        "invoice's number"
                    )
                cluster = []
            if window is not None:
                cluster.append(window)


# -- judging ---------------------------------------------------------------------------------


@dataclass
class _Verdict:
    allocations: list[tuple[int, int]]
    customer: str | None
    confidence: int
    safe: bool
    method: str
    reasons: list[str]

    def fit_into(self, left: list[int], book: _Book) -> None:
        """Shrink suggested allocations to what is still open; say so where it bites."""
        fitted: list[tuple[int, int]] = []
        for index, amount in self.allocations:
            part = min(amount, left[index])
            if part < amount:
                number = book.invoices[index].number
                if part:
                    self.reasons.append(
                        f"only {book.money(part, book.currency[index])} of {number} is left "
                        "after other lines of this statement"
                    )
                else:
                    self.reasons.append(f"{number} is taken by other lines of this statement")
            if part > 0:
                fitted.append((index, part))
                left[index] -= part
        self.allocations = fitted

    def proposal(self, book: _Book, found: _Evidence, *, auto: bool) -> Proposal:
        allocated = sum(amount for _, amount in self.allocations)
        received = max(found.amount, 0)
        ordered = sorted(self.allocations, key=lambda item: book.age(item[0]))
        return Proposal(
            line_key=found.line.key,
            customer_id=self.customer,
            allocations=tuple(
                Allocation(book.invoices[index].id, amount) for index, amount in ordered
            ),
            unapplied_minor=received - allocated,
            confidence=max(0, min(100, self.confidence)),
            method=self.method,
            reasons=tuple(self.reasons) or ("nothing to apply",),
            auto=auto,
        )


def _nothing(reasons: list[str], customer: str | None = None, confidence: int = 0) -> _Verdict:
    return _Verdict([], customer, confidence, False, "none", reasons)


class _Book:
    """The open invoices, indexed once, and what is still open on each as lines post."""

    def __init__(self, invoices: Sequence[OpenInvoice], closed: Sequence[ClosedInvoice]) -> None:
        # Indices follow invoice ids, so no result depends on the order invoices come in.
        self.invoices = sorted(invoices, key=lambda invoice: invoice.id)
        self.closed = sorted(closed, key=lambda invoice: invoice.id)
        self.closed_by_number: dict[str, list[int]] = {}
        self.closed_by_reference: dict[str, list[int]] = {}
        self.currency: list[str] = []
        self.remaining: list[int] = []
        self.compact: list[str] = []
        self.reference: list[str | None] = []
        self.by_number: dict[str, list[int]] = {}
        self.by_reference: dict[str, list[int]] = {}
        self.by_reference_body: dict[str, list[int]] = {}
        self.names_of: dict[str, list[str]] = {}
        self.open_of: dict[tuple[str, str], list[int]] = {}
        self.invoices_of: dict[str, list[int]] = {}
        self.by_amount: dict[tuple[str, str], dict[int, dict[int, None]]] = {}
        self.everyone_by_amount: dict[tuple[str, int], dict[int, None]] = {}
        self.account_customers: dict[str, set[str]] = {}
        self.leads: set[str] = set()  # how exactly typed invoice numbers begin
        self.letter_leads: set[str] = set()  # ...and those that begin with letters
        compact_lengths: set[int] = set()
        self.bare_lengths: set[int] = set()
        self.numbers_have_digits = True
        reference_lengths: set[int] = set()
        latest: dict[str, tuple[date, str, str]] = {}
        accounts_seen: set[tuple[str, frozenset[str]]] = set()
        previous_id = None
        for index, invoice in enumerate(self.invoices):
            if invoice.id == previous_id:
                raise ValueError(f"invoices: invoice id {invoice.id!r} is given twice")
            previous_id = invoice.id
            if invoice.amount_due_minor <= 0:
                raise ValueError(
                    f"invoice {invoice.number}: amount_due_minor must be positive, "
                    f"got {invoice.amount_due_minor}"
                )
            currency = invoice.currency.upper()
            self.currency.append(currency)
            self.remaining.append(invoice.amount_due_minor)
            compact, unpadded, bare = _number_keys(invoice.number)
            self.compact.append(compact)
            if compact.isalpha():
                self.numbers_have_digits = False
            for key in (compact, unpadded, bare):
                if key:
                    self.by_number.setdefault(key, []).append(index)
            if compact:
                lead = _lead(compact)
                self.leads.add(lead)
                if compact[0].isalpha():
                    self.letter_leads.add(lead)
                    compact_lengths.add(len(compact))
            if bare:
                self.leads.add(bare[:3])
                self.bare_lengths.add(len(bare))
            reference = _compact_reference(invoice.reference) if invoice.reference else None
            if reference and not _rf_valid(reference):
                raise ValueError(
                    f"invoice {invoice.number}: reference {invoice.reference!r} is not a valid "
                    "ISO 11649 creditor reference"
                )
            self.reference.append(reference)
            if reference:
                self.by_reference.setdefault(reference, []).append(index)
                self.by_reference_body.setdefault(reference[4:], []).append(index)
                reference_lengths.add(len(reference))
            customer = invoice.customer_id
            names = self.names_of.setdefault(customer, [])
            if invoice.customer_name and invoice.customer_name not in names:
                names.append(invoice.customer_name)
            stamp = (invoice.issue_date, invoice.id, invoice.customer_name)
            if customer not in latest or stamp > latest[customer]:
                latest[customer] = stamp
            self.open_of.setdefault((customer, currency), []).append(index)
            self.invoices_of.setdefault(customer, []).append(index)
            bucket = self.by_amount.setdefault((customer, currency), {})
            bucket.setdefault(invoice.amount_due_minor, {})[index] = None
            self.everyone_by_amount.setdefault((currency, invoice.amount_due_minor), {})[index] = (
                None
            )
            if (customer, invoice.payer_accounts) not in accounts_seen:
                accounts_seen.add((customer, invoice.payer_accounts))
                for account in invoice.payer_accounts:
                    compact_account = _compact_account(account)
                    if compact_account:
                        self.account_customers.setdefault(compact_account, set()).add(customer)
        self.closed_of: dict[str, list[int]] = {}
        self.closed_compact: list[str] = []
        for index, invoice in enumerate(self.closed):
            self.closed_of.setdefault(invoice.customer_id, []).append(index)
            compact, unpadded, bare = _number_keys(invoice.number)
            self.closed_compact.append(compact)
            if compact.isalpha():
                self.numbers_have_digits = False
            for key in (compact, unpadded, bare):
                if key:
                    self.closed_by_number.setdefault(key, []).append(index)
            if compact:
                lead = _lead(compact)
                self.leads.add(lead)
                if compact[0].isalpha():
                    self.letter_leads.add(lead)
            if bare:
                self.leads.add(bare[:3])
            if invoice.reference:
                reference = _compact_reference(invoice.reference)
                self.closed_by_reference.setdefault(reference, []).append(index)
        for indices in self.open_of.values():
            indices.sort(key=self.age)
        self.display_name = {customer: stamp[2] for customer, stamp in latest.items()}
        self.typo_lengths = {
            length + step for length in compact_lengths for step in range(-MAX_TYPOS, MAX_TYPOS + 1)
        }
        self.longest_number = max((len(key) for key in self.by_number), default=0)
        self.shortest_compact = min(compact_lengths, default=0)
        self.longest_compact = max(compact_lengths, default=0)
        self.reference_lengths = {
            length + step for length in reference_lengths for step in (-1, 0, 1)
        }
        self._near: dict[str, list[int]] | None = None
        self._names: _Names | None = None

    def age(self, index: int) -> tuple[date, date, str, str]:
        invoice = self.invoices[index]
        return invoice.due_date, invoice.issue_date, invoice.number, invoice.id

    def money(self, minor: int, currency: str) -> str:
        try:
            return format_minor(minor, currency)
        except MoneyError:
            return f"{minor} minor units of {currency}"

    def post(self, allocations: Iterable[tuple[int, int]]) -> None:
        for index, amount in allocations:
            before = self.remaining[index]
            if not 0 < amount <= before:
                raise AssertionError(f"allocation of {amount} exceeds the {before} still open")
            after = before - amount
            self.remaining[index] = after
            invoice = self.invoices[index]
            currency = self.currency[index]
            for buckets, old, new in (
                (self.by_amount[(invoice.customer_id, currency)], before, after),
                (self.everyone_by_amount, (currency, before), (currency, after)),
            ):
                bucket = buckets[old]  # type: ignore[index]
                del bucket[index]
                if not bucket:
                    del buckets[old]  # type: ignore[arg-type]
                if after:
                    buckets.setdefault(new, {})[index] = None  # type: ignore[arg-type]

    @property
    def near(self) -> dict[str, list[int]]:
        """Invoices by every reading of their number one character shorter (built when a typo
        first needs it): two readings within two typos share such a reading."""
        if self._near is None:
            near: dict[str, list[int]] = {}
            get = near.get
            for index, compact in enumerate(self.compact):
                reference = self.reference[index]
                body = reference[4:] if reference else compact
                for key in (compact, body) if body != compact else (compact,):
                    # Typed numbers are only searched when they begin with our letters, so a
                    # typo is never in those: no need to drop them.
                    letters = len(_lead(key)) if key[:1].isalpha() and key is compact else 0
                    variants = (key[:at] + key[at + 1 :] for at in range(letters, len(key)))
                    for variant in (key, *variants):
                        bucket = get(variant)
                        if bucket is None:
                            near[variant] = [index]
                        elif bucket[-1] != index:
                            bucket.append(index)
            self._near = near
        return self._near

    @property
    def names(self) -> _Names:
        if self._names is None:
            self._names = _Names(self.names_of)
        return self._names

    # -- reading a line: what does not change as balances are taken --

    def read(self, line: IncomingLine) -> _Evidence:
        currency = line.currency.upper()
        if line.amount_minor <= 0:
            return _Evidence(
                line, currency, line.amount_minor, [], [], False, None, frozenset(), {},
                _TIER_OUTGOING,
            )  # fmt: skip
        notes: list[str] = []
        account = _compact_account(line.payer_account)
        account_customers = frozenset(self.account_customers.get(account, ())) if account else None
        if account_customers and len(account_customers) > MAX_PAYER_CUSTOMERS:
            notes.append(f"payer account {account} is shared by many customers")
            account_customers = frozenset()
        account_customers = account_customers or frozenset()
        names = {} if account_customers else self.names.scores(line.payer_name)
        payers = sorted(account_customers) or sorted(
            customer for customer, score in names.items() if score >= NAME_MATCH
        )
        mentions: list[_Mention] = []
        doubtful = False
        segments: list[tuple[str, str]] = []
        if line.creditor_reference:
            compact = _compact_reference(line.creditor_reference)
            if _RF_HEAD.match(compact):
                segments.append(("structured reference", compact))
            else:
                segments.append(("reference field", line.creditor_reference))
        if line.remittance_text:
            segments.append(("remittance", line.remittance_text))
        for document in line.referred_documents:
            segments.append(("referred document", document))
        for source, text in segments:
            if self.numbers_have_digits and not _DIGIT.search(text):
                continue  # no reference or invoice number of ours is without digits
            scan = _Scan(self, text, source, payers[:MAX_PAYER_CUSTOMERS])
            mentions.extend(scan.mentions)
            notes.extend(scan.notes)
            doubtful = doubtful or scan.doubtful
        if any(mention.kind == "rf" and mention.exact for mention in mentions):
            tier = _TIER_RF
        elif any(mention.exact for mention in mentions):
            tier = _TIER_NUMBER
        elif mentions:
            tier = _TIER_TYPO
        elif payers:
            tier = _TIER_PAYER
        else:
            tier = _TIER_NOTHING
        return _Evidence(
            line, currency, line.amount_minor, mentions, notes, doubtful, account,
            account_customers, names, tier,
        )  # fmt: skip

    def near_references(self, reading: str) -> dict[int, int]:
        """Invoices whose RF reference is one typo from the reading."""
        candidates = set(self.by_reference_body.get(reading[4:], ()))
        for variant in _deletions(reading[4:]):
            candidates.update(self.near.get(variant, ()))
        found: dict[int, int] = {}
        for index in candidates:
            reference = self.reference[index]
            if reference and OSA.distance(reading, reference, score_cutoff=1) <= 1:
                found[index] = 1
        return found

    def near_numbers(
        self, forms: Sequence[str], payers: Sequence[str]
    ) -> tuple[tuple[int, int], ...]:
        """Invoices whose number is at most two typos from one of the forms: any one a single
        deletion each way apart, and any open invoice of the payer (a clerk looks there too)."""
        forms = [form for form in forms if len(form) in self.typo_lengths]
        if not forms:
            return ()
        candidates: set[int] = set()
        for form in forms:
            for variant in _deletions(form):
                candidates.update(self.near.get(variant, ()))
        for customer in payers:
            candidates.update(self.invoices_of.get(customer, ()))
        found: list[tuple[int, int]] = []
        for index in sorted(candidates):
            key = self.compact[index]
            edits = min(OSA.distance(form, key, score_cutoff=MAX_TYPOS) for form in forms)
            if edits <= MAX_TYPOS:
                found.append((index, edits))
        return tuple(found)

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

    def _reduced(self, index: int) -> bool:
        return self.remaining[index] != self.invoices[index].amount_due_minor

    def customer_of(self, index: int) -> str:
        return self.invoices[index].customer_id

    def judge(self, found: _Evidence) -> _Verdict:
        if found.amount <= 0:
            return _nothing(["not money received: nothing to apply"])
        say = _Say(self, found)
        by_text = self._from_mentions(found, say)
        if by_text is not None and by_text.safe:
            return by_text
        by_payer = self._from_payer(found, say)
        if by_payer is None:
            if by_text is not None:
                return by_text
            if found.mentions or say.doubtful:
                return _nothing(say.notes or ["the remittance names no open invoice"])
            return _nothing(
                say.notes + ["no invoice reference, and the payer is not a known customer"]
            )
        if by_text is None:
            if say.doubtful and by_payer.safe:
                by_payer.safe = False
                by_payer.confidence = min(by_payer.confidence, 70)
            by_payer.reasons = say.notes + by_payer.reasons
            return by_payer
        chosen_by_text = {index for index, _ in by_text.allocations}
        chosen_by_payer = {index for index, _ in by_payer.allocations}
        if (
            by_payer.safe
            and chosen_by_payer
            and chosen_by_payer <= self._named(found)
            and not say.doubtful
        ):
            # The text could mean several invoices; the amount and payer settle which.
            by_payer.reasons = by_text.reasons + by_payer.reasons
            return by_payer
        # A clerk decides; the text's reading says what the payer wrote and what is doubtful.
        if chosen_by_text == chosen_by_payer or by_text.confidence >= by_payer.confidence:
            better = by_text
        else:
            better = by_payer
        better.safe = False
        better.confidence = min(better.confidence, 70)
        if chosen_by_payer and chosen_by_payer != chosen_by_text:
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
            named.update(index for index, _ in mention.near)
        return named

    def _from_mentions(self, found: _Evidence, say: _Say) -> _Verdict | None:
        currency = found.currency
        resolved: list[tuple[_Mention, list[tuple[int, int]]]] = []
        for mention in found.mentions:
            if mention.closed:
                retyped = self._closed_mention(found, say, mention)
                if retyped is not None:
                    resolved.append((retyped, list(retyped.near)))
                continue
            candidates = [(index, 0) for index in mention.exact] or list(mention.near)
            in_currency = [(i, e) for i, e in candidates if self.currency[i] == currency]
            still_open = [(i, e) for i, e in in_currency if self.remaining[i] > 0]
            if mention.exact and not still_open:
                # Paid by an earlier line: paid twice if the payer may be its customer and pays
                # what it was for; else perhaps a typo of an open invoice.
                again = [
                    index
                    for index, _ in in_currency
                    if self.invoices[index].amount_due_minor == found.amount
                    and self.support(found, self.customer_of(index)) != _CONTRADICT
                ]
                retyped = None if again else self._retyped(found, mention)
                if retyped is not None:
                    what = (
                        "is settled"
                        if in_currency
                        else f"is billed in {self.currency[candidates[0][0]]}"
                    )
                    say.notes.append(
                        f"{mention.source} names {say.numbers(mention.exact)}, which {what}"
                    )
                    resolved.append((retyped, list(retyped.near)))
                    continue
            if not in_currency:
                if mention.exact:
                    say.doubt(
                        f"{mention.source} names {say.numbers(i for i, _ in candidates)}, "
                        f"billed in {self.currency[candidates[0][0]]}; the payment is in "
                        f"{currency}"
                    )
                else:
                    say.doubt(
                        f"{mention.source} names {mention.shown!r}, which is no open invoice's "
                        f"number in {currency}"
                    )
                continue
            if not still_open:
                say.doubt(
                    f"{mention.source} names {mention.shown!r}: "
                    f"{say.numbers(i for i, _ in in_currency)}, already settled by an earlier "
                    "line of this statement"
                )
                continue
            resolved.append((mention, still_open))
        if not resolved:
            return None
        # A mention that only restates an invoice another mention names exactly adds nothing.
        certain = {options[0][0] for mention, options in resolved if mention.exact}
        distinct: list[tuple[_Mention, list[tuple[int, int]]]] = []
        for mention, options in resolved:
            if not mention.exact and certain.intersection(i for i, _ in options):
                continue
            if mention.exact and any(
                other.exact and other_options == options for other, other_options in distinct
            ):
                continue
            distinct.append((mention, options))
        if len(distinct) == 1:
            return self._one_named(found, say, *distinct[0])
        return self._several_named(found, say, distinct)

    def _closed_mention(self, found: _Evidence, say: _Say, mention: _Mention) -> _Mention | None:
        """A quoted invoice that is no longer open: paid twice, if the payer may be its
        customer and pays what it was for; else perhaps a typo of an open invoice."""
        closed = [self.closed[index] for index in mention.closed]
        numbers = ", ".join(invoice.number for invoice in closed)
        again = [
            invoice
            for invoice in closed
            if invoice.currency.upper() == found.currency
            and invoice.total_minor == found.amount
            and self.support(found, invoice.customer_id) != _CONTRADICT
        ]
        if not again:
            retyped = self._retyped(found, mention)
            if retyped is not None:
                say.notes.append(f"{mention.source} names {numbers}, which is no longer open")
                return retyped
        say.doubt(
            f"{mention.source} names {numbers}, which is no longer open"
            + ("; the amount is what it was for: paid twice?" if again else "")
        )
        return None

    def _retyped(self, found: _Evidence, mention: _Mention) -> _Mention | None:
        """A number typed exactly that cannot be what the payer meant (another customer's
        invoice, settled, or billed in another currency) may be a typo of the one open invoice
        of the payer due for exactly the amount within two typos of it."""
        if mention.kind != "number":
            return None
        alternatives = [
            (index, typos)
            for index, typos in self._look_alikes(
                mention, found.currency, found.amount, mention.exact
            )
            if self.support(found, self.customer_of(index)) >= _NAME
        ]
        if len(alternatives) != 1:
            return None
        return _Mention(
            mention.shown, mention.kind, mention.source, (), tuple(alternatives), mention.forms
        )

    def _identity(self, mention: _Mention, edits: int) -> int:
        if edits == 0:
            return _REFERENCE if mention.kind == "rf" else _NUMBER
        return _TYPO1 if edits == 1 else _TYPO2

    def _look_alikes(
        self, mention: _Mention, currency: str, amount: int, exclude: Iterable[int]
    ) -> list[tuple[int, int]]:
        """Open invoices due for exactly `amount`, other than `exclude`, whose number is at most
        two typos from what the payer typed: the invoice a mistyped number may have meant."""
        skip = set(exclude)
        pool = [i for i in self.everyone_by_amount.get((currency, amount), ()) if i not in skip]
        if not pool:
            return []
        keys = [self.key_of(index, mention.kind) for index in pool]
        found: dict[int, int] = {}
        for form in mention.forms:
            for _, edits, at in process.extract(
                form, keys, scorer=OSA.distance, score_cutoff=MAX_TYPOS, limit=None
            ):
                index = pool[at]
                found[index] = min(int(edits), found.get(index, MAX_TYPOS))
        return sorted(found.items(), key=lambda item: (item[1], self.age(item[0])))

    def key_of(self, index: int, kind: str) -> str:
        return (self.reference[index] or "") if kind == "rf" else self.compact[index]

    def _closed_look_alikes(
        self, mention: _Mention, chosen: int, amount: int
    ) -> list[tuple[str, int]]:
        """Closed invoices of the chosen invoice's customer, for exactly `amount`, as close to
        what the payer typed as the chosen one: the line may pay one of them twice."""
        invoice = self.invoices[chosen]
        found: list[tuple[str, int]] = []
        for index in self.closed_of.get(invoice.customer_id, ()):
            closed = self.closed[index]
            if closed.total_minor != amount or closed.currency.upper() != self.currency[chosen]:
                continue
            key = (
                _compact_reference(closed.reference or "")
                if mention.kind == "rf"
                else self.closed_compact[index]
            )
            edits = min(OSA.distance(form, key, score_cutoff=MAX_TYPOS) for form in mention.forms)
            if edits <= MAX_TYPOS:
                found.append((closed.number, edits))
        return sorted(found)

    def _one_named(
        self, found: _Evidence, say: _Say, mention: _Mention, options: list[tuple[int, int]]
    ) -> _Verdict:
        amount, currency = found.amount, found.currency

        def fit(index: int) -> tuple[bool, int]:
            return self.remaining[index] == amount, self.support(found, self.customer_of(index))

        ambiguous: list[str] = []
        if mention.exact:
            ranked = sorted(
                (index for index, _ in options),
                key=lambda index: (tuple(-value for value in fit(index)), self.age(index)),
            )
            chosen, edits = ranked[0], 0
            best = fit(chosen)
            for index in ranked[1:]:
                if fit(index) == best:
                    ambiguous.append(say.numbers([index]) + " carries the same number")
            fits_exactly, support = best
            retyped = self._retyped(found, mention) if support == _CONTRADICT else None
            if retyped is not None:
                # The number is a typo that happens to be another customer's invoice.
                say.notes.append(
                    f"{mention.source} names {say.numbers([chosen])}, which is "
                    f"{self.display_name[self.customer_of(chosen)]}'s"
                )
                return self._one_named(found, say, retyped, list(retyped.near))
            if mention.kind == "number" and not fits_exactly:
                # A part or over-payment of the named invoice, or the exact amount of an
                # invoice whose number is a typo away?
                for index, typos in self._look_alikes(mention, currency, amount, mention.exact):
                    if self.support(found, self.customer_of(index)) != _CONTRADICT:
                        ambiguous.append(
                            f"{say.numbers([index])}, {say.typos(typos)} away, is open for "
                            f"exactly {say.money(amount)}"
                        )
            elif mention.kind == "number" and support == _NO_SUPPORT and found.names:
                for index, typos in self._look_alikes(mention, currency, amount, mention.exact):
                    if self.support(found, self.customer_of(index)) >= _NAME:
                        ambiguous.append(
                            f"{say.numbers([index])}, {say.typos(typos)} away, is the payer's "
                            f"and also open for exactly {say.money(amount)}"
                        )
        else:
            fitting = [
                (index, typos)
                for index, typos in options
                if self.remaining[index] == amount
                and self.support(found, self.customer_of(index)) != _CONTRADICT
            ]
            pool = fitting or options
            ranked = sorted(
                pool,
                key=lambda option: (
                    -self.support(found, self.customer_of(option[0])),
                    option[1],
                    self.age(option[0]),
                ),
            )
            chosen, edits = ranked[0]
            if fitting:
                best = self.support(found, self.customer_of(chosen))
                searched = {index for index, _ in options}
                rivals = ranked[1:] + self._look_alikes(mention, currency, amount, searched)
                for index, typos in rivals:
                    if self.support(found, self.customer_of(index)) == best:
                        ambiguous.append(
                            f"{say.numbers([index])} ({say.typos(typos)} away) fits as well"
                        )
                for number, typos in self._closed_look_alikes(mention, chosen, amount):
                    ambiguous.append(
                        f"{number}, {say.typos(typos)} away, was already paid for exactly "
                        f"{say.money(amount)}: paid twice?"
                    )
                    say.doubtful = True  # the amount and payer cannot tell these apart either
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
        amount = found.amount
        customer = self.customer_of(chosen)
        remaining = self.remaining[chosen]
        support = self.support(found, customer)
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
        reasons.append(say.payer(customer, support))
        confidence, safe = _grade(identity, fit, support)
        method = "reference" if mention.kind == "rf" else "invoice_number"
        if fit == "over":
            extra = self._excess_paid(customer, found.currency, amount - remaining, {chosen})
            if extra:
                excess = amount - remaining
                if len(extra) == 1:
                    allocations.append((extra[0], excess))
                else:
                    allocations.extend((index, self.remaining[index]) for index in extra)
                reasons.append(
                    f"the excess of {say.money(excess)} is exactly what "
                    f"{say.numbers(extra)} owe{'s' if len(extra) == 1 else ''}, which the "
                    "remittance does not name"
                )
                confidence, safe, method = min(confidence, 80), False, "combination"
        if ambiguous:
            reasons.extend(ambiguous)
            confidence, safe = min(confidence, 60), False
        if say.doubtful and fit != "exact":
            confidence, safe = min(confidence, 70), False
        return _Verdict(allocations, customer, confidence, safe, method, reasons)

    def _excess_paid(self, customer: str, currency: str, excess: int, named: set[int]) -> list[int]:
        """Open invoices of the customer, not named, that an over-payment's excess pays exactly:
        one invoice, or failing that one set of them."""
        single = [
            index
            for index in self.by_amount.get((customer, currency), {}).get(excess, {})
            if index not in named
        ]
        if single:
            return [min(single, key=self.age)]
        others = [
            index
            for index in self.open_of.get((customer, currency), ())
            if index not in named and 0 < self.remaining[index] < excess
        ][:MAX_SUBSET_CANDIDATES]
        sets = _subset_sums([self.remaining[index] for index in others], excess, limit=1)
        if sets:
            return [others[bit] for bit in range(len(others)) if sets[0] >> bit & 1]
        return []

    def _several_named(
        self,
        found: _Evidence,
        say: _Say,
        named: list[tuple[_Mention, list[tuple[int, int]]]],
    ) -> _Verdict:
        """A combined payment: the line pays several named invoices."""
        amount = found.amount
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
        elif len(solutions) > 1:
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
        if not reading:
            return _nothing(reasons + doubts)
        chosen = sorted(reading, key=self.age)
        total = sum(self.remaining[i] for i in chosen)
        fit = "exact" if total == amount else "partial" if amount < total else "over"
        allocations: list[tuple[int, int]] = []
        left = amount
        for index in chosen:
            part = min(left, self.remaining[index])
            if part > 0:
                allocations.append((index, part))
                left -= part
        customers = sorted({self.customer_of(index) for index in chosen})
        identity = max(self._identity(mention, edits) for mention, edits in reading.values())
        support = min(self.support(found, customer) for customer in customers)
        for index in chosen:
            mention, edits = reading[index]
            reasons.append(say.named(mention, index, self._identity(mention, edits)))
            if edits:
                for number, typos in self._closed_look_alikes(
                    mention, index, self.remaining[index]
                ):
                    doubts.append(
                        f"{number}, {say.typos(typos)} from {mention.shown!r}, was already paid "
                        "for as much: paid twice?"
                    )
        method = "invoice_number"
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
            customer = customers[0]
            reasons.append(say.payer(customer, support))
            if fit == "over":
                extra = self._excess_paid(customer, found.currency, amount - total, set(reading))
                if extra:
                    doubts.append(
                        f"the excess is exactly what {say.numbers(extra)} "
                        f"owe{'s' if len(extra) == 1 else ''}, which the remittance does not name"
                    )
                    method = "combination"
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
        if doubts or (say.doubtful and fit != "exact"):
            reasons.extend(doubts)
            confidence, safe = min(confidence, 60), False
        kinds = {mention.kind for mention, _ in reading.values()}
        if method != "combination" and kinds == {"rf"}:
            method = "reference"
        return _Verdict(allocations, customer, confidence, safe, method, reasons)

    def _payer_customers(self, found: _Evidence) -> tuple[list[str], str]:
        if found.account_customers:
            return sorted(found.account_customers), "account"
        close = sorted(
            (customer for customer, score in found.names.items() if score >= NAME_MATCH),
            key=lambda customer: (-found.names[customer], customer),
        )
        if len(close) == 1:
            # A lone surname ("Becker") names no company, however exactly one is called so.
            close += self.names.sharing(found.line.payer_name, close[0])
        return close[:MAX_PAYER_CUSTOMERS], "name"

    def _from_payer(self, found: _Evidence, say: _Say) -> _Verdict | None:
        """No usable reference: the payer and the exact amount, one invoice or a combination."""
        customers, how = self._payer_customers(found)
        if not customers:
            return None
        amount, currency = found.amount, found.currency
        certain_payer = len(customers) == 1
        support = _ACCOUNT if how == "account" else _NAME
        matches = sorted(
            (
                index
                for customer in customers
                for index in self.by_amount.get((customer, currency), {}).get(amount, ())
            ),
            key=self.age,
        )
        if matches:
            chosen = matches[0]
            customer = self.customer_of(chosen)
            reasons = [
                say.payer(customer, support),
                f"no invoice reference; the amount equals the {say.due(chosen)}",
            ]
            if len(matches) == 1 and certain_payer and self._reduced(chosen):
                # What is left after a part payment, or a part payment of another invoice?
                confidence, safe = 75, False
                reasons.append(
                    "without a reference, a payment of what is left of an invoice is not "
                    "told apart from a part payment of another"
                )
            elif len(matches) == 1 and certain_payer:
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
                say.payer(customer, support),
                f"no invoice reference; {say.numbers(chosen)} add up to exactly "
                f"{say.money(amount)}",
            ]
            if len(found_sets) > 1:
                confidence, safe = 55, False
                reasons.append("other combinations of open invoices also add up to the amount")
            elif len(open_invoices) > MAX_SUBSET_CANDIDATES:
                confidence, safe = 75, False
                reasons.append(
                    f"only the {MAX_SUBSET_CANDIDATES} oldest of {len(open_invoices)} open "
                    "invoices were searched"
                )
            elif not certain_payer:
                confidence, safe = 70, False
                reasons.append(f"the payer could be any of {len(customers)} customers")
            elif any(self._reduced(index) for index in chosen):
                confidence, safe = 70, False
                reasons.append("some of them are only partly open after earlier lines")
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
            say.payer(customers[0], support)
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
        # A part or over-payment from a payer we do not know may be meant for another firm
        # whose invoices are numbered like ours.
        if fit == "partial":
            return (93, True) if supported else (75, False)
        return (91, True) if supported else (75, False)
    if fit == "exact":
        # A typo'd number may as well be a settled invoice's, paid twice: only the payer's
        # known account, or its name for a single typo, makes it this one.
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
    """Reasons in the clerk's words, and the doubts found while judging one line."""

    def __init__(self, book: _Book, found: _Evidence) -> None:
        self.book = book
        self.found = found
        self.currency = found.currency
        self.notes: list[str] = list(found.notes)
        self.doubtful = found.doubtful

    def doubt(self, note: str) -> None:
        self.doubtful = True
        self.notes.append(note)

    def money(self, minor: int) -> str:
        return self.book.money(minor, self.currency)

    def numbers(self, indices: Iterable[int]) -> str:
        return ", ".join(self.book.invoices[index].number for index in indices)

    def typos(self, count: int) -> str:
        return "1 typo" if count == 1 else f"{count} typos"

    def due(self, index: int) -> str:
        book = self.book
        text = f"{self.money(book.remaining[index])} due on {book.invoices[index].number}"
        if book.remaining[index] != book.invoices[index].amount_due_minor:
            text += " after earlier lines of this statement"
        return text

    def named(self, mention: _Mention, index: int, identity: int) -> str:
        invoice = self.book.invoices[index]
        if mention.kind == "rf":
            what = f"the reference of {invoice.number}"
            if identity != _REFERENCE:
                return (
                    f"{mention.source} {mention.shown!r} fails its check digits; it is one typo "
                    f"from {what}"
                )
            return f"{mention.source} {mention.shown} is {what}"
        if identity == _NUMBER:
            return f"{mention.source} names {invoice.number}"
        typos = 1 if identity == _TYPO1 else 2
        return f"{mention.source} names {invoice.number} ({self.typos(typos)}: {mention.shown!r})"

    def payer(self, customer: str, support: int) -> str:
        book = self.book
        name = book.display_name.get(customer, customer)
        found = self.found
        if support == _ACCOUNT:
            return f"payer account {found.account} is a known account of {name}"
        if support == _NAME:
            return f"payer name {found.line.payer_name!r} matches {name}"
        if support == _CONTRADICT:
            if found.account_customers:
                others = sorted(book.display_name[c] for c in found.account_customers)
                return (
                    f"payer account {found.account} is known for {', '.join(others)}, "
                    f"not for {name}"
                )
            return f"payer name {found.line.payer_name!r} is another customer's, not {name}'s"
        return f"the payer is not known as {name}"
