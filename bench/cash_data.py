"""Seeded test data for cash application: customers, their open invoices and a noisy bank
statement, with the truth for every line. Pure: no database, no clock, one `random.Random`.

    generate(seed, invoices=50_000, lines=100_000) -> CashDataset

The world. About one customer per three open invoices: company names with their country's
legal forms (GmbH, SARL, B.V., S.r.l., Ltd...), built from a few hundred surnames, trade and
brand words, so many share a surname-like word ("Becker Bau GmbH", "Becker & Roth KG") and a
few share their whole name but for the legal form. Each has one to three IBANs; the ones it has
paid from before are known (a new customer has none), 2% share a group parent's account, 10%
have paid through a payment provider whose pooled account is thus known for hundreds of
customers. Currencies: EUR for 92%, else GBP, CHF or USD. Invoices are numbered gaplessly per
year by issue date, `INV-2025-000001`..., and only some of them are still open: the settled
ones (about 1.2 per open one) are kept as history, so a mistyped number usually is another real
invoice's number, and some payments quote a settled invoice. Amounts: half the customers pay a
subscription price (net list price plus their country's VAT), so one customer often has several
open invoices for the very same amount; the rest have project and usage amounts, some round.

The statement (shares of all lines; the benchmark prints what each came to):

    customer payments meant to be matched (35.3%)
      rf_structured      7.3  RF reference in the structured field
      rf_in_text         3.0  RF reference typed in the remittance, plain or in groups of four
      rf_typo            1.2  RF reference with one typo (fails its mod-97 check)
      number_exact       5.5  invoice number as printed (8% of them as a referred document)
      number_typo        1.8  number with one typo (75%) or two (25%): digit swapped, dropped,
                              doubled or mistyped, O for 0
      number_unpadded    1.8  number without leading zeros: "INV 2026 123"
      number_spaced      2.0  number with spaces, slashes, no separators, or without "INV-"
      amount_iban        3.0  no reference: exact amount from a known IBAN
      amount_name        1.0  no reference, from an account we have never seen: payer name only
      combined_named     2.0  one payment for 2-4 invoices, each named
      combined_subset    1.0  one payment for 2-4 invoices of one customer, none named
      partial            1.5  names one invoice, pays less (2-3% discount taken, half, a round
                              instalment)
      overpayment        0.5  names one invoice, pays more (rounded up, bank charges added)
      foreign_currency   1.0  a GBP/CHF/USD invoice paid in its currency, named
      provider_reference 1.0  paid through a payment provider's pooled account, named
    customer payments that need a clerk (5.5%)
      ambiguous_duplicate 1.3 no reference, known IBAN, several open invoices for that amount
      ambiguous_name     0.7  no reference, new account, payer gives only a shared surname
      partial_unnamed    0.5  no reference, known IBAN, pays part of an invoice
      paid_twice         1.0  names an invoice that is already settled, pays it again
      currency_mismatch  0.7  names an EUR invoice but pays in another currency
      third_party_payer  0.5  another customer's known account pays this one's invoice
      provider_payout    0.8  a payment provider's lump sum, no invoice named
    everything else on the account (59.2%)
      unknown_payer     21.2  money from people and firms that are not customers, remittance
                              noise (their own order and invoice numbers), 15% for amounts
                              that are common list prices
      outgoing          38.0  negative lines: suppliers, salaries, taxes, fees, refunds to
                              customers naming their invoice

Customer payments come from a known account 85% of the time, a new one 10%, none 5%, with the
name as the customer wrote it, in capitals, transliterated (MUELLER), without the legal form,
cut at 27 characters by the bank, or missing. Remittance texts carry SEPA prefixes (EREF+,
SVWZ+), dates, customer and purchase order numbers around the reference. At the default two
lines per open invoice the statement uses about 85% of the open invoices; if a kind runs out of
suitable invoices the line becomes an unknown payer instead (counted in `shortfall`).

The truth. For every line, `allocations` is what the payer meant: the invoices and amounts a
careful clerk ends up applying once everything is known (empty for money that pays no open
invoice). `matchable` says whether the line alone, the open invoices, the customers' names and
known accounts and the numbers of settled invoices are enough to be certain of it. The clerk:
  - trusts a payer identified by a known account (shared by at most five customers) or, without
    one, by a name equal to exactly one customer's (ignoring case, accents, punctuation and
    the legal form; a name cut at 27 characters compared cut at 27);
  - takes a reference or number typed exactly (however spaced, with or without its leading
    zeros) as the open invoice it names, in the line's currency, unless the payer is another
    customer; if the amount does not fit it exactly (part or over-payment), only when no other
    open invoice within two typos of it is due for exactly the amount, and an over-payment only
    when the excess is not exactly another open invoice of the customer;
  - reads any other reference or number (a typo, a settled invoice's, another customer's) as
    the one invoice within two typos (Damerau-Levenshtein), open and due for exactly the amount
    or settled for exactly it, whose customer the payer does not contradict; a settled one
    means paid twice, which is never matchable;
  - without a reference, needs exactly one identified customer, and then exactly one of its
    open invoices due for the amount, or else exactly one set of them adding up to it, counting
    what the matchable referenced lines of the statement already paid;
  - is never certain of money going out, another currency than the invoice's, a payer who
    contradicts the invoice's customer, or several invoices named for less than they owe.
A line is matchable when that reading is what the payer meant. The clerk judges referenced
lines against the invoices open at the start, and lines without a reference against what the
matchable referenced lines left. `settled` holds the invoices already paid, as the matcher's
`ClosedInvoice`s: the service knows them too and passes them as `match_lines(closed=...)`.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from rapidfuzz import process
from rapidfuzz.distance import OSA
from stdnum import iban as iban_number

from tallybook.core.cash_matching import Allocation, ClosedInvoice, IncomingLine, OpenInvoice
from tallybook.core.money import round_to_minor
from tallybook.core.references import creditor_reference, display

__all__ = [
    "KINDS",
    "CashDataset",
    "Customer",
    "LineTruth",
    "generate",
]

# kind -> share of the statement's lines, in percent (see the module docstring)
KINDS: dict[str, float] = {
    "rf_structured": 7.3,
    "rf_in_text": 3.0,
    "rf_typo": 1.2,
    "number_exact": 5.5,
    "number_typo": 1.8,
    "number_unpadded": 1.8,
    "number_spaced": 2.0,
    "amount_iban": 3.0,
    "amount_name": 1.0,
    "combined_named": 2.0,
    "combined_subset": 1.0,
    "partial": 1.5,
    "overpayment": 0.5,
    "foreign_currency": 1.0,
    "provider_reference": 1.0,
    "ambiguous_duplicate": 1.3,
    "ambiguous_name": 0.7,
    "partial_unnamed": 0.5,
    "paid_twice": 1.0,
    "currency_mismatch": 0.7,
    "third_party_payer": 0.5,
    "provider_payout": 0.8,
    "unknown_payer": 21.2,
    "outgoing": 38.0,
}
# Scarce kinds are built first, so the plentiful ones do not use up what they need.
_BUILD_ORDER = [
    "ambiguous_duplicate",
    "combined_subset",
    "partial_unnamed",
    "third_party_payer",
    "amount_iban",
    "amount_name",
    "ambiguous_name",
    "combined_named",
    "foreign_currency",
    "currency_mismatch",
    "provider_reference",
    "paid_twice",
    "partial",
    "overpayment",
    "rf_typo",
    "number_typo",
    "number_unpadded",
    "number_spaced",
    "rf_in_text",
    "number_exact",
    "rf_structured",
    "provider_payout",
    "unknown_payer",
    "outgoing",
]
assert sorted(_BUILD_ORDER) == sorted(KINDS)

STATEMENT_START = date(2026, 3, 2)
STATEMENT_END = date(2026, 3, 31)
MAX_TYPOS = 2  # what a clerk still reads as a mistyped reference
TRUNCATED_NAME = 27  # banks that cut the payer's name keep this many characters
MAX_ACCOUNT_CUSTOMERS = 5  # an account known for more customers is a pooled one


@dataclass(frozen=True)
class Customer:
    id: str
    name: str
    country: str
    currency: str
    accounts: tuple[str, ...]  # every account it pays from
    known_accounts: tuple[str, ...]  # those it has paid from before (incl. group, provider)
    new_account: str  # an account of its own we have never seen a payment from
    provider: str | None  # the payment provider it has paid through, if any
    subscription_minor: int | None  # its recurring invoice amount, if it has one


@dataclass(frozen=True)
class LineTruth:
    kind: str
    matchable: bool
    allocations: tuple[Allocation, ...]  # what the payer meant, in invoice id order
    note: str  # why a clerk can or cannot be certain


@dataclass(frozen=True)
class CashDataset:
    seed: int
    customers: tuple[Customer, ...]
    invoices: tuple[OpenInvoice, ...]
    settled: tuple[ClosedInvoice, ...]  # issued and already paid: history, not open
    lines: tuple[IncomingLine, ...]
    truth: tuple[LineTruth, ...]
    shortfall: dict[str, int] = field(default_factory=dict)


# -- words ----------------------------------------------------------------------------------

_SURNAMES = {
    "DE": "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer "
    "Koch Bauer Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann "
    "Hartmann Lange Schmitt Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler "
    "Herrmann König Walter Mayer Huber Kaiser Fuchs Peters Lang Scholz Möller Weiß Jung Hahn "
    "Schubert Vogel Friedrich Keller Günther Frank Berger Winkler Roth Beck Lorenz Baumann "
    "Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus Martin Schumacher Krämer Vogt "
    "Stein Jäger Otto Sommer Groß Seidel Heinrich Brandt Haas Schreiber Graf Schulte Dietrich "
    "Ziegler Kuhn Kühn Pohl Engel Horn Busch Bergmann Voigt Sauer Arnold Wolff Pfeiffer",
    "FR": "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent "
    "Lefèvre Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard André Lefebvre "
    "Mercier Dupont Lambert Bonnet François Legrand Garnier Faure Rousseau Blanc Guérin Henry "
    "Roussel Nicolas Perrin Morin Mathieu Clément Gauthier Dumont Fontaine Chevalier Robin",
    "NL": "Jansen Bakker Visser Smit Meijer Mulder Bos Vos Peters Hendriks Dekker Brouwer "
    "Dijkstra Smits Peeters Maes Jacobs Mertens Willems Claes Goossens Wouters Verhoeven "
    "Kuipers Veenstra Huisman Prins Timmermans",
    "IT": "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo "
    "Conti Mancini Costa Giordano Rizzo Lombardi Moretti Barbieri Fontana Santoro Mariani",
    "ES": "García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Martín "
    "Jiménez Ruiz Hernández Díaz Moreno Muñoz Álvarez Romero Navarro Torres",
    "GB": "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson "
    "Evans Walker White Roberts Green Hall Wood Jackson Clarke Hughes Edwards",
}
_SURNAMES["AT"] = _SURNAMES["DE"]
_SURNAMES["BE"] = _SURNAMES["NL"] + " " + _SURNAMES["FR"]
_SURNAMES["CH"] = _SURNAMES["DE"] + " " + _SURNAMES["FR"]
_SURNAMES["US"] = _SURNAMES["GB"]

_TRADES = {
    "DE": "Logistik Bau Consulting Software Elektrotechnik Maschinenbau Handel Immobilien Medien "
    "Druck Spedition Gastronomie Steuerberatung Haustechnik Metallbau Transporte Systeme "
    "Datentechnik Werkzeuge Verpackung Dachdeckerei Zahntechnik Personalservice Sicherheit",
    "FR": "Conseil Transports Informatique Bâtiment Distribution Services Ingénierie "
    "Développement Logistique Immobilier Communication Énergie",
    "NL": "Bouw Techniek Transport Adviesbureau Installatietechniek Logistiek Handel Media "
    "Automatisering Schilderwerken",
    "IT": "Costruzioni Trasporti Servizi Informatica Impianti Logistica Consulenze Edilizia",
    "ES": "Construcciones Transportes Servicios Ingeniería Distribuciones Logística Consultores",
    "GB": "Consulting Software Logistics Trading Holdings Systems Solutions Partners Digital "
    "Media Engineering Services Technologies Group Analytics Design Foods Retail Capital Labs",
}
_TRADES["AT"] = _TRADES["DE"]
_TRADES["BE"] = _TRADES["NL"] + " " + _TRADES["FR"]
_TRADES["CH"] = _TRADES["DE"]
_TRADES["US"] = _TRADES["GB"]

_BRANDS = (
    "Nordlicht Alpenblick Sonnenhof Blauwal Rheinwerk Elbtal Hanse Isartal Lumen Vektor Pixel "
    "Quantum Horizon Atlas Orion Polaris Zenit Helix Nova Aurora Cobalt Falke Adler Kranich "
    "Eiche Linde Birke Tanne Bergquell Seeblick Lichtblick Weitblick Kompass Leuchtturm Meridian "
    "Solaris Vertex Nimbus Triton Kestrel Juniper Greenfield Riverside Oakwood Bluebird"
).split()

_FORMS = {
    "DE": ["GmbH"] * 6 + ["AG", "KG", "GmbH & Co. KG", "UG (haftungsbeschränkt)", "e.K.", "OHG"],
    "AT": ["GmbH"] * 5 + ["AG", "KG", "OG"],
    "CH": ["AG"] * 3 + ["GmbH", "SA", "Sàrl"],
    "FR": ["SARL"] * 3 + ["SAS"] * 3 + ["SA", "EURL"],
    "NL": ["B.V."] * 5 + ["N.V.", "V.O.F."],
    "BE": ["BV"] * 3 + ["NV", "SRL", "SA"],
    "IT": ["S.r.l."] * 4 + ["S.p.A.", "S.n.c."],
    "ES": ["S.L."] * 4 + ["S.A."],
    "GB": ["Ltd"] * 4 + ["Limited", "PLC", "LLP"],
    "US": ["Inc."] * 3 + ["LLC"] * 3 + ["Corp."],
}
_FIRST_NAMES = (
    "Anna Lukas Maria Jonas Sophie Felix Laura Paul Julia Max Claire Louis Emma Hugo Sanne Daan "
    "Giulia Marco Lucía Pablo Oliver Amelia James Grace Thomas Sarah Peter Eva Jan Ines"
).split()

_COUNTRIES = ["DE", "FR", "NL", "AT", "BE", "IT", "ES", "GB", "CH", "US"]
_COUNTRY_WEIGHTS = [40, 14, 10, 8, 6, 6, 5, 5, 3, 3]
_VAT_PERMILLE = {
    "DE": 190, "AT": 200, "FR": 200, "NL": 210, "BE": 210, "IT": 220, "ES": 210,
    "GB": 200, "CH": 81, "US": 0,
}  # fmt: skip
_BBAN_LENGTH = {"DE": 18, "AT": 16, "FR": 23, "NL": 14, "BE": 12, "IT": 23, "ES": 20, "GB": 18,
                "CH": 17}  # fmt: skip
_LIST_PRICES = [900, 1900, 2900, 3900, 4900, 7900, 9900, 14900, 19900, 24900, 29900, 49900,
                79900, 99900, 149900]  # fmt: skip
_PROVIDERS = [
    ("Stripe Technology Europe Ltd", "IE"),
    ("Adyen N.V.", "NL"),
    ("PayPal (Europe) S.a r.l. et Cie, S.C.A.", "LU"),
    ("Mollie B.V.", "NL"),
]
_FX = {"USD": Decimal("1.0842"), "GBP": Decimal("0.8571"), "CHF": Decimal("0.9563"),
       "EUR": Decimal("1")}  # fmt: skip

# The clerk's name comparison: case, accents, punctuation and legal forms do not count.
_CLERK_FORMS = frozenset(
    "GMBH AG KG CO UG HAFTUNGSBESCHRANKT EK OHG OG SA SARL SAS EURL BV NV VOF SRL SPA SNC SL "
    "LTD LIMITED PLC LLP LLC INC CORP".split()
)


def clerk_name_key(name: str) -> str:
    upper = name.upper().replace("ß", "SS")
    folded = unicodedata.normalize("NFKD", upper).encode("ascii", "ignore").decode()
    for digraph, letter in (("AE", "A"), ("OE", "O"), ("UE", "U")):
        folded = folded.replace(digraph, letter)
    words = re.findall(r"[A-Z0-9]+", folded.replace(".", ""))
    return " ".join(word for word in words if word not in _CLERK_FORMS)


def _transliterate(name: str) -> str:
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"),
                          ("Ü", "Ue"), ("ß", "ss")):  # fmt: skip
        name = name.replace(umlaut, plain)
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()


def _without_form(name: str) -> str:
    words = name.split()
    while len(words) > 1 and (
        clerk_name_key(words[-1]) == "" or words[-1].startswith("(") or words[-1] == "&"
    ):
        words.pop()
    return " ".join(words)


# -- the world ------------------------------------------------------------------------------


def _iban(rng: random.Random, country: str) -> str:
    if country == "US":
        return f"{rng.randrange(10**8, 10**9)}{rng.randrange(10**9, 10**10)}"  # routing+acct
    length = _BBAN_LENGTH.get(country, 18)
    if country == "NL":
        bban = "".join(rng.choice("ABINRSG") for _ in range(4)) + _digits(rng, 10)
    elif country == "GB":
        bban = rng.choice(["NWBK", "BARC", "LOYD", "MIDL"]) + _digits(rng, 14)
    elif country == "FR":
        bban = _digits(rng, 21) + f"{rng.randrange(100):02d}"
    elif country == "IT":
        bban = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + _digits(rng, 22)
    else:
        bban = _digits(rng, length)
    check = iban_number.calc_check_digits(country + "00" + bban)
    return f"{country}{check}{bban}"


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


class _NameMaker:
    """Company and person names, unique among customers."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.taken: set[str] = set()
        self.customer_keys: set[str] = set()

    def company(self, country: str) -> str:
        rng = self.rng
        surnames = _SURNAMES[country].split()
        trades = _TRADES[country].split()
        form = rng.choice(_FORMS[country])
        while True:
            pattern = rng.random()
            if pattern < 0.45:
                core = f"{rng.choice(surnames)} {rng.choice(trades)}"
            elif pattern < 0.57:
                first, second = rng.sample(surnames, 2)
                core = f"{first} & {second}"
            elif pattern < 0.72:
                core = f"{rng.choice(_BRANDS)} {rng.choice(trades)}"
            elif pattern < 0.84:
                core = rng.choice(surnames)
            elif pattern < 0.94:
                core = f"{rng.choice(trades)} {rng.choice(surnames)}"
            else:
                core = f"{rng.choice(_BRANDS)} {rng.choice(surnames)} {rng.choice(trades)}"
            name = f"{core} {form}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def person(self, country: str) -> str:
        return f"{self.rng.choice(_FIRST_NAMES)} {self.rng.choice(_SURNAMES[country].split())}"

    def stranger(self, country: str) -> str:
        """A firm or person that is not a customer and is not named exactly like one."""
        while True:
            name = self.person(country) if self.rng.random() < 0.4 else self.company(country)
            if clerk_name_key(name) not in self.customer_keys:
                return name


@dataclass
class _Issued:
    id: str
    customer: int
    currency: str
    amount: int
    issue: date
    due: date
    open: bool
    number: str = ""
    reference: str = ""


def _amount(rng: random.Random, subscription: int | None = None) -> int:
    if subscription is not None:
        if rng.random() < 0.8:
            return subscription
        return subscription + rng.randrange(100, 40_000)
    if rng.random() < 0.15:
        return rng.randrange(1, 60) * 5_000  # a fixed fee: 50.00, 1500.00...
    low, high = rng.choices(
        [(500, 5_000), (5_000, 30_000), (30_000, 150_000), (150_000, 2_000_000)],
        weights=[20, 45, 28, 7],
    )[0]
    return rng.randrange(low, high)


@dataclass
class _CustomerDraft:
    id: str
    name: str
    country: str
    currency: str
    accounts: list[str]
    known: list[str]
    new_account: str
    provider: int | None
    subscription: int | None
    weight: int


def _gross(net_minor: int, permille: int, currency: str) -> int:
    return round_to_minor(Decimal(net_minor) * (1000 + permille) / 1000 / 100, currency)


def _build_customers(
    rng: random.Random, count: int, names: _NameMaker
) -> tuple[list[_CustomerDraft], list[str]]:
    """The customers, and the pooled accounts of the payment providers."""
    provider_accounts = [_iban(rng, country) for _, country in _PROVIDERS]
    drafts: list[_CustomerDraft] = []
    for position in range(count):
        country = rng.choices(_COUNTRIES, weights=_COUNTRY_WEIGHTS)[0]
        currency = {"GB": "GBP", "CH": "CHF", "US": "USD"}.get(country, "EUR")
        if currency != "EUR" and rng.random() < 0.25:
            currency = "EUR"
        name = names.company(country)
        accounts = [_iban(rng, country) for _ in range(rng.choices([1, 2, 3], [80, 15, 5])[0])]
        new_customer = rng.random() < 0.06
        known = [] if new_customer else list(accounts)
        provider = None
        if not new_customer and rng.random() < 0.10:
            provider = rng.randrange(len(_PROVIDERS))
            known.append(provider_accounts[provider])
        subscription = None
        if rng.random() < 0.5:
            vat = _VAT_PERMILLE[country] if rng.random() < 0.75 else 0
            subscription = _gross(rng.choice(_LIST_PRICES), vat, currency)
        weight = min(int(rng.paretovariate(1.15) * 10), 600)
        drafts.append(
            _CustomerDraft(
                id=f"cus_{rng.getrandbits(40):010x}{position:05d}",
                name=name,
                country=country,
                currency=currency,
                accounts=accounts,
                known=known,
                new_account=_iban(rng, country),
                provider=provider,
                subscription=subscription,
                weight=weight,
            )
        )
    # A group parent pays for a subsidiary from its own account.
    for _ in range(max(1, count // 100)):
        parent, child = rng.sample(range(count), 2)
        if drafts[parent].known and drafts[child].known:
            drafts[child].known.append(drafts[parent].accounts[0])
            drafts[child].accounts.append(drafts[parent].accounts[0])
    names.customer_keys = {clerk_name_key(draft.name) for draft in drafts}
    return drafts, provider_accounts


def _build_invoices(
    rng: random.Random, customers: list[_CustomerDraft], open_count: int
) -> list[_Issued]:
    weights = [customer.weight for customer in customers]
    owners = rng.choices(range(len(customers)), weights=weights, k=open_count)
    issued: list[_Issued] = []
    counts = [0] * len(customers)
    for owner in owners:
        counts[owner] += 1
    for index, customer in enumerate(customers):
        opened = counts[index]
        settled = (
            0 if not customer.known else int(opened * rng.uniform(0.6, 1.8)) + rng.randrange(3)
        )
        for position in range(opened + settled):
            is_open = position < opened
            if is_open:
                age = rng.choices([(1, 45), (45, 120), (120, 420)], weights=[65, 25, 10])[0]
            else:
                age = (20, 440)
            issue = STATEMENT_START - timedelta(days=rng.randrange(*age))
            due = issue + timedelta(days=rng.choice([14, 14, 30, 30, 30, 60]))
            issued.append(
                _Issued(
                    id=f"inv_{rng.getrandbits(48):012x}",
                    customer=index,
                    currency=customer.currency,
                    amount=_amount(rng, customer.subscription),
                    issue=issue,
                    due=due,
                    open=is_open,
                )
            )
    # Gapless numbering per year, in issue order.
    rng.shuffle(issued)
    issued.sort(key=lambda invoice: invoice.issue)
    sequence: dict[int, int] = {}
    for invoice in issued:
        year = invoice.issue.year
        sequence[year] = sequence.get(year, 0) + 1
        invoice.number = f"INV-{year}-{sequence[year]:06d}"
        invoice.reference = creditor_reference(invoice.number)
    return issued


# -- how payers write things ------------------------------------------------------------------


def _compact(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isascii() and ch.isalnum())


def _runs_key(text: str) -> str:
    """Letter and digit groups, digits without leading zeros: 'INV-2026-123'."""
    runs = re.findall(r"[A-Z]+|[0-9]+", text.upper())
    return "-".join(run.lstrip("0") or "0" if run.isdigit() else run for run in runs)


def _unpadded(number: str) -> str:
    prefix, year, sequence = number.split("-")
    return f"{prefix}-{year}-{int(sequence)}"


_KEYPAD_NEIGHBOURS = {
    "0": "198", "1": "0247", "2": "1358", "3": "269", "4": "1578", "5": "24680",
    "6": "3597", "7": "48", "8": "57960", "9": "8630",
}  # fmt: skip


def _typo(rng: random.Random, text: str) -> str:
    """One slip of the finger on a digit of the text (never a no-op)."""
    positions = [i for i, ch in enumerate(text) if ch.isdigit()]
    while True:
        at = rng.choice(positions)
        digit = text[at]
        slip = rng.random()
        if slip < 0.45:
            changed = text[:at] + rng.choice(_KEYPAD_NEIGHBOURS[digit]) + text[at + 1 :]
        elif slip < 0.70:
            after = at + 1
            if after >= len(text) or not text[after].isdigit():
                continue
            changed = text[:at] + text[after] + digit + text[after + 1 :]
        elif slip < 0.85:
            changed = text[:at] + text[at + 1 :]
        elif slip < 0.95:
            changed = text[:at] + digit + text[at:]
        else:
            if digit not in "01":
                continue
            changed = text[:at] + ("O" if digit == "0" else "l") + text[at + 1 :]
        if _compact(changed) != _compact(text):
            return changed


def _spaced(rng: random.Random, number: str) -> str:
    prefix, year, sequence = number.split("-")
    return rng.choice(
        [
            f"{prefix} {year} {sequence}",
            f"{prefix}{year}{sequence}",
            f"{prefix}/{year}/{sequence}",
            f"{prefix}-{year} {sequence}",
            f"{prefix} - {year} - {sequence}",
            f"{prefix} {year}-{sequence[:3]} {sequence[3:]}",
            f"{prefix.lower()}{year}-{sequence}",
            f"{year}-{sequence}",
            f"{year}/{sequence}",
        ]
    )


def _date_text(rng: random.Random, day: date) -> str:
    return rng.choice([day.strftime("%d.%m.%Y"), day.isoformat(), day.strftime("%d/%m/%Y")])


class _Texts:
    """Remittance text around the references a payer means, as banks deliver it."""

    LABELS = [
        "Rechnung ", "Rechnungsnr. ", "RG ", "Re. ", "Invoice ", "Inv. ", "Facture ", "Factuur ",
        "Fattura n. ", "Factura ", "Payment ", "Zahlung ", "", "", "",
    ]  # fmt: skip

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def around(self, mentions: list[str], extra: str = "") -> str:
        rng = self.rng
        label = rng.choice(self.LABELS)
        if len(mentions) == 1:
            body = label + mentions[0]
        else:
            joiner = rng.choice([", ", " ", " + ", " / ", "; ", " und ", " and "])
            body = label + joiner.join(mentions)
        parts = [body]
        if extra:
            parts.append(extra)
        roll = rng.random()
        if roll < 0.15:
            parts.append("vom " + _date_text(rng, STATEMENT_START - timedelta(rng.randrange(90))))
        elif roll < 0.25:
            parts.append(f"Kd-Nr. {rng.randrange(10_000, 99_999)}")
        elif roll < 0.33:
            parts.append(f"PO {rng.randrange(4_500_000_000, 4_599_999_999)}")
        elif roll < 0.38:
            parts.append(rng.choice(["Danke", "Vielen Dank", "Thank you", "Merci"]))
        text = " ".join(parts)
        return self.sepa(text)

    def sepa(self, text: str) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.12:
            return f"EREF+{self.e2e()} SVWZ+{text}"
        if roll < 0.18:
            return f"SVWZ+{text}"
        if roll < 0.22:
            return f"{text} EREF: {self.e2e()}"
        return text

    def e2e(self) -> str:
        rng = self.rng
        if rng.random() < 0.4:
            return "NOTPROVIDED"
        return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(14))

    def noise(self) -> str:
        """Remittance of money that is not for us: other firms' own numbers, no reference."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            other = rng.choice(
                [
                    f"RE{rng.randrange(24, 27)}{rng.randrange(10_000, 99_999)}",
                    f"{rng.randrange(2024, 2027)}/{rng.randrange(1000, 9999)}",
                    f"F-{rng.randrange(100_000, 999_999)}",
                    f"A{rng.randrange(1_000_000, 9_999_999)}",
                    f"{rng.randrange(10_000_000, 99_999_999)}",
                ]
            )
            text = rng.choice(["Rechnung ", "Invoice ", "Facture ", "Order ", "Auftrag "]) + other
        elif roll < 0.40:
            text = rng.choice(["Erstattung", "Gutschrift", "Rückerstattung", "Refund", "Kaution"])
            text += f" {rng.randrange(1000, 99_999)}"
        elif roll < 0.50:
            text = f"Miete {rng.randrange(1, 13):02d}/2026"
        elif roll < 0.60:
            text = rng.choice(["Zinsen", "Bonus", "Provision", "Schadensregulierung"])
            text += f" {rng.randrange(100_000, 999_999)}"
        elif roll < 0.75:
            text = ""
        else:
            text = f"Kd-Nr. {rng.randrange(10_000, 99_999)} " + rng.choice(
                ["Bestellung", "Lieferung", "Vertrag", "Abo"]
            )
        return self.sepa(text).strip()


# -- the statement --------------------------------------------------------------------------


@dataclass
class _Draft:
    kind: str
    amount: int
    currency: str
    payer_name: str | None
    payer_account: str | None
    remittance: str | None
    creditor_reference: str | None = None
    referred: tuple[str, ...] = ()
    mentions: list[str] = field(default_factory=list)  # references as the payer typed them
    intent: dict[int, int] = field(default_factory=dict)  # issued index -> amount meant
    name_truncated: bool = False
    never: str | None = None  # why a clerk is never certain of this line, by construction


class _Statement:
    def __init__(
        self,
        rng: random.Random,
        customers: list[_CustomerDraft],
        issued: list[_Issued],
        names: _NameMaker,
        provider_accounts: list[str],
    ) -> None:
        self.rng = rng
        self.provider_accounts = provider_accounts
        self.customers = customers
        self.issued = issued
        self.names = names
        self.texts = _Texts(rng)
        self.taken = [not invoice.open for invoice in issued]
        self.open_of: list[list[int]] = [[] for _ in customers]
        self.settled_of: list[list[int]] = [[] for _ in customers]
        for index, invoice in enumerate(issued):
            (self.open_of if invoice.open else self.settled_of)[invoice.customer].append(index)
        free = [index for index, invoice in enumerate(issued) if invoice.open]
        rng.shuffle(free)
        self.free_eur = [index for index in free if issued[index].currency == "EUR"]
        self.free_other = [index for index in free if issued[index].currency != "EUR"]
        self.payer_only_used: set[int] = set()
        account_customers: dict[str, list[int]] = {}
        for index, customer in enumerate(customers):
            for account in customer.known:
                account_customers.setdefault(account, []).append(index)
        self.account_customers = account_customers
        self.with_open = [index for index in range(len(customers)) if self.open_of[index]]
        self.with_settled = [index for index in range(len(customers)) if self.settled_of[index]]
        by_surname: dict[str, int] = {}
        for customer in customers:
            for word in clerk_name_key(customer.name).split():
                by_surname[word] = by_surname.get(word, 0) + 1
        self.word_count = by_surname

    # -- picking invoices --

    def _pop_free(self, pool: list[int], accept: Callable[[int], bool] | None = None) -> int | None:
        tries = 0
        while pool and tries < 200:
            index = pool.pop()
            if self.taken[index]:
                continue
            if accept is not None and not accept(index):
                pool.insert(0, index)
                tries += 1
                continue
            self.taken[index] = True
            return index
        return None

    def _free_of(self, customer: int) -> list[int]:
        return [index for index in self.open_of[customer] if not self.taken[index]]

    def _unique_known_account(self, customer: int) -> str | None:
        for account in self.customers[customer].known:
            if len(self.account_customers[account]) == 1:
                return account
        return None

    def _customer_for(
        self,
        accept: Callable[[int], bool],
        *,
        payer_only: bool = True,
        pool: list[int] | None = None,
    ) -> int | None:
        pool = pool if pool is not None else self.with_open
        for _ in range(400):
            customer = self.rng.choice(pool)
            if payer_only and customer in self.payer_only_used:
                continue
            if accept(customer):
                if payer_only:
                    self.payer_only_used.add(customer)
                return customer
        return None

    # -- payer fields --

    def _payer(self, customer: int, draft: _Draft, *, account: str = "usual") -> None:
        rng = self.rng
        owner = self.customers[customer]
        roll = rng.random()
        if account == "new" or (account == "usual" and (roll < 0.10 or not owner.known)):
            draft.payer_account = owner.new_account
        elif account == "usual" and roll < 0.15:
            draft.payer_account = None
        else:
            own_known = [acct for acct in owner.known if acct in owner.accounts]
            draft.payer_account = rng.choice(own_known or owner.accounts)
        if draft.payer_account and rng.random() < 0.3 and owner.country != "US":
            compact = draft.payer_account
            draft.payer_account = " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
        draft.payer_name, draft.name_truncated = self._name_variant(owner.name)

    def _name_variant(self, name: str, *, always: bool = False) -> tuple[str | None, bool]:
        roll = self.rng.random()
        if roll < 0.35:
            return name, False
        if roll < 0.60:
            return _transliterate(name).upper(), False
        if roll < 0.70:
            return unicodedata.normalize("NFKD", name).encode(
                "ascii", "ignore"
            ).decode().upper(), False
        if roll < 0.80:
            return _without_form(name), False
        if roll < 0.95 or always:
            if len(name) > TRUNCATED_NAME:
                return name[:TRUNCATED_NAME], True
            return name, False
        return None, False

    # -- the kinds --

    def build(self, kind: str) -> _Draft | None:
        return getattr(self, "_" + kind)()

    def _named_single(self, kind: str, index: int, written: str, *, reference: bool) -> _Draft:
        invoice = self.issued[index]
        draft = _Draft(kind, invoice.amount, invoice.currency, None, None, None)
        self._payer(invoice.customer, draft)
        draft.mentions = [written]
        draft.intent = {index: invoice.amount}
        if reference and kind == "rf_structured":
            draft.creditor_reference = written
            roll = self.rng.random()
            draft.remittance = (
                "" if roll < 0.4 else self.texts.around([invoice.number]) if roll < 0.6
                else self.texts.sepa(self.rng.choice(["Zahlung", "Payment", "Danke", "Rechnung"]))
            )  # fmt: skip
            if roll >= 0.4 and roll < 0.6:
                draft.mentions.append(invoice.number)
        elif kind == "number_exact" and self.rng.random() < 0.08:
            draft.referred = (written,)
            draft.remittance = self.texts.sepa("Zahlung")
        else:
            draft.remittance = self.texts.around([written])
        return draft

    def _rf_structured(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        reference = self.issued[index].reference
        written = display(reference) if self.rng.random() < 0.2 else reference
        return self._named_single("rf_structured", index, written, reference=True)

    def _rf_in_text(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        reference = self.issued[index].reference
        written = display(reference) if self.rng.random() < 0.5 else reference
        draft = self._named_single("rf_in_text", index, written, reference=True)
        draft.remittance = self.texts.sepa(
            self.rng.choice(["", "Ref ", "Referenz: ", "Zahlungsreferenz ", "Reference "]) + written
        )
        return draft

    def _rf_typo(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        reference = self.issued[index].reference
        shown = display(reference) if self.rng.random() < 0.5 else reference
        while True:
            written = _typo(self.rng, shown)
            if len(_compact(written)) >= 5:
                break
        draft = self._named_single("rf_typo", index, written, reference=True)
        draft.remittance = self.texts.sepa(self.rng.choice(["", "Ref ", "Referenz: "]) + written)
        return draft

    def _number_exact(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        number = self.issued[index].number
        written = number.lower() if self.rng.random() < 0.1 else number
        return self._named_single("number_exact", index, written, reference=False)

    def _number_typo(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        written = _typo(self.rng, self.issued[index].number)
        if self.rng.random() < 0.25:
            written = _typo(self.rng, written)
        return self._named_single("number_typo", index, written, reference=False)

    def _number_unpadded(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        number = _unpadded(self.issued[index].number)
        written = self.rng.choice([number, number.replace("-", " "), number.replace("-", "/", 1)])
        return self._named_single("number_unpadded", index, written, reference=False)

    def _number_spaced(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        written = _spaced(self.rng, self.issued[index].number)
        return self._named_single("number_spaced", index, written, reference=False)

    def _written(self, index: int) -> str:
        invoice = self.issued[index]
        roll = self.rng.random()
        if roll < 0.6:
            return invoice.number
        if roll < 0.75:
            return invoice.reference
        if roll < 0.85:
            return _spaced(self.rng, invoice.number)
        return _unpadded(invoice.number)

    def _foreign_currency(self) -> _Draft | None:
        index = self._pop_free(self.free_other)
        if index is None:
            return None
        written = self._written(index)
        draft = self._named_single("foreign_currency", index, written, reference=False)
        if written.startswith("RF") and self.rng.random() < 0.5:
            draft.creditor_reference, draft.remittance = written, ""
        return draft

    def _provider_reference(self) -> _Draft | None:
        customer = self._customer_for(
            lambda c: self.customers[c].provider is not None and bool(self._free_of(c)),
            payer_only=False,
        )
        if customer is None:
            return None
        index = self.rng.choice(self._free_of(customer))
        self.taken[index] = True
        provider = self.customers[customer].provider
        assert provider is not None
        written = self._written(index)
        draft = self._named_single("provider_reference", index, written, reference=False)
        draft.payer_name = _PROVIDERS[provider][0].upper()
        draft.payer_account = self.provider_accounts[provider]
        token = "".join(self.rng.choice("abcdefghijkmnopqrstuvwxyz0123456789") for _ in range(14))
        draft.remittance = f"{written} {self.rng.choice(['pi_', 'py_', 'ch_'])}{token}"
        return draft

    def _combined_named(self) -> _Draft | None:
        customer = self._customer_for(lambda c: len(self._free_of(c)) >= 2, payer_only=False)
        if customer is None:
            return None
        free = self._free_of(customer)
        chosen = self.rng.sample(free, min(len(free), self.rng.choice([2, 2, 2, 3, 3, 4])))
        for index in chosen:
            self.taken[index] = True
        written = [self._written(index) for index in chosen]
        total = sum(self.issued[index].amount for index in chosen)
        draft = _Draft("combined_named", total, self.issued[chosen[0]].currency, None, None, None)
        self._payer(customer, draft)
        draft.mentions = list(written)
        draft.intent = {index: self.issued[index].amount for index in chosen}
        draft.remittance = self.texts.around(written)
        return draft

    def _payer_only(self, kind: str, customer: int, chosen: list[int], amount: int) -> _Draft:
        draft = _Draft(kind, amount, self.issued[chosen[0]].currency, None, None, None)
        account = self._unique_known_account(customer)
        self._payer(customer, draft, account="known")
        if account is not None:
            draft.payer_account = account
        roll = self.rng.random()
        if roll < 0.5:
            draft.remittance = self.texts.sepa(
                self.rng.choice(
                    [
                        "Zahlung",
                        "Payment",
                        "Überweisung",
                        "Sammelzahlung",
                        "Rechnungen",
                        "Danke",
                        "Abschlag",
                        "",
                        f"Kd-Nr. {self.rng.randrange(10_000, 99_999)}",
                    ]
                )  # fmt: skip
            ).strip()
        elif roll < 0.8:
            draft.remittance = ""
        else:
            draft.remittance = self.texts.noise()
        return draft

    def _amount_iban(self) -> _Draft | None:
        customer = self._customer_for(
            lambda c: self._unique_known_account(c) is not None and bool(self._free_of(c))
        )
        if customer is None:
            return None
        index = self.rng.choice(self._free_of(customer))
        self.taken[index] = True
        draft = self._payer_only("amount_iban", customer, [index], self.issued[index].amount)
        draft.intent = {index: self.issued[index].amount}
        return draft

    def _amount_name(self) -> _Draft | None:
        customer = self._customer_for(lambda c: bool(self._free_of(c)))
        if customer is None:
            return None
        index = self.rng.choice(self._free_of(customer))
        self.taken[index] = True
        draft = self._payer_only("amount_name", customer, [index], self.issued[index].amount)
        draft.payer_account = (
            self.customers[customer].new_account if self.rng.random() < 0.8 else None
        )
        draft.payer_name, draft.name_truncated = self._name_variant(
            self.customers[customer].name, always=True
        )
        draft.intent = {index: self.issued[index].amount}
        return draft

    def _combined_subset(self) -> _Draft | None:
        customer = self._customer_for(
            lambda c: (
                self._unique_known_account(c) is not None
                and 3 <= len(self.open_of[c]) <= 24
                and len(self._free_of(c)) >= 2
            )
        )
        if customer is None:
            return None
        free = self._free_of(customer)
        chosen = self.rng.sample(free, min(len(free), self.rng.choice([2, 2, 3, 3, 4])))
        for index in chosen:
            self.taken[index] = True
        total = sum(self.issued[index].amount for index in chosen)
        draft = self._payer_only("combined_subset", customer, chosen, total)
        draft.intent = {index: self.issued[index].amount for index in chosen}
        return draft

    def _ambiguous_duplicate(self) -> _Draft | None:
        def duplicated(customer: int) -> list[int]:
            by_amount: dict[int, list[int]] = {}
            for index in self._free_of(customer):
                by_amount.setdefault(self.issued[index].amount, []).append(index)
            groups = [group for group in by_amount.values() if len(group) >= 2]
            return groups[0] if groups else []

        customer = self._customer_for(
            lambda c: self._unique_known_account(c) is not None and bool(duplicated(c))
        )
        if customer is None:
            return None
        group = duplicated(customer)
        for index in group:
            self.taken[index] = True  # the look-alikes stay open, untouched by other lines
        index = self.rng.choice(group)
        draft = self._payer_only(
            "ambiguous_duplicate", customer, [index], self.issued[index].amount
        )
        draft.intent = {index: self.issued[index].amount}
        return draft

    def _ambiguous_name(self) -> _Draft | None:
        def shared_word(customer: int) -> str | None:
            words = [
                word
                for word in clerk_name_key(self.customers[customer].name).split()
                if self.word_count.get(word, 0) >= 3 and len(word) >= 4
            ]
            return words[0] if words else None

        customer = self._customer_for(
            lambda c: shared_word(c) is not None and bool(self._free_of(c))
        )
        if customer is None:
            return None
        index = self.rng.choice(self._free_of(customer))
        self.taken[index] = True
        draft = self._payer_only("ambiguous_name", customer, [index], self.issued[index].amount)
        word = shared_word(customer)
        assert word is not None
        draft.payer_name = self.rng.choice(
            [word, word.title(), f"{self.names.person('DE').split()[0]} {word.title()}"]
        )
        draft.name_truncated = False
        draft.payer_account = self.customers[customer].new_account
        draft.intent = {index: self.issued[index].amount}
        return draft

    def _partial_unnamed(self) -> _Draft | None:
        customer = self._customer_for(
            lambda c: (
                self._unique_known_account(c) is not None
                and len(self.open_of[c]) <= 24
                and bool(self._free_of(c))
            )
        )
        if customer is None:
            return None
        index = self.rng.choice(self._free_of(customer))
        self.taken[index] = True
        amount = self._part(self.issued[index].amount)
        draft = self._payer_only("partial_unnamed", customer, [index], amount)
        draft.intent = {index: amount}
        return draft

    def _part(self, due: int) -> int:
        roll = self.rng.random()
        currency = "EUR"
        if roll < 0.4:
            amount = due - round_to_minor(Decimal(due) / 100 * Decimal("0.02"), currency)
        elif roll < 0.55:
            amount = due - round_to_minor(Decimal(due) / 100 * Decimal("0.03"), currency)
        elif roll < 0.8:
            amount = due // 2
        else:
            amount = (due // 2 // 10_000) * 10_000 or due // 3
        return amount if 0 < amount < due else max(1, due - 1)

    def _partial(self) -> _Draft | None:
        index = self._pop_free(self.free_eur, lambda i: self.issued[i].amount >= 200)
        if index is None:
            return None
        written = self._written(index)
        draft = self._named_single("partial", index, written, reference=False)
        draft.amount = self._part(self.issued[index].amount)
        draft.intent = {index: draft.amount}
        extra = self.rng.choice(["", "abzgl. 2% Skonto", "Teilzahlung", "1. Rate", "part payment"])
        draft.remittance = self.texts.around([written], extra)
        return draft

    def _overpayment(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        due = self.issued[index].amount
        written = self._written(index)
        draft = self._named_single("overpayment", index, written, reference=False)
        roll = self.rng.random()
        if roll < 0.4:
            draft.amount = (due // 1_000 + 1) * 1_000
        elif roll < 0.7:
            draft.amount = (due // 10_000 + 1) * 10_000
        else:
            draft.amount = due + self.rng.choice([350, 500, 750, 1_000, 1_250, 1_500])
        draft.intent = {index: due}
        return draft

    def _paid_twice(self) -> _Draft | None:
        customer = self._customer_for(lambda c: True, payer_only=False, pool=self.with_settled)
        if customer is None:
            return None
        index = self.rng.choice(self.settled_of[customer])
        invoice = self.issued[index]
        written = self._written(index)
        draft = _Draft("paid_twice", invoice.amount, invoice.currency, None, None, None)
        self._payer(customer, draft)
        draft.mentions = [written]
        if written.startswith("RF") and self.rng.random() < 0.5:
            draft.creditor_reference, draft.remittance = written, ""
        else:
            draft.remittance = self.texts.around([written])
        draft.never = "pays an invoice that is already settled"
        return draft

    def _currency_mismatch(self) -> _Draft | None:
        index = self._pop_free(self.free_eur)
        if index is None:
            return None
        invoice = self.issued[index]
        currency = self.rng.choice(["USD", "GBP", "CHF"])
        written = self._written(index)
        draft = self._named_single("currency_mismatch", index, written, reference=False)
        draft.currency = currency
        draft.amount = round_to_minor(Decimal(invoice.amount) * _FX[currency] / 100, currency)
        draft.intent = {}
        draft.never = f"pays an {invoice.currency} invoice in {currency}"
        return draft

    def _third_party_payer(self) -> _Draft | None:
        payer = self._customer_for(
            lambda c: self._unique_known_account(c) is not None, payer_only=False
        )
        if payer is None:
            return None
        index = self._pop_free(self.free_eur, lambda i: self.issued[i].customer != payer)
        if index is None:
            return None
        written = self._written(index)
        draft = self._named_single("third_party_payer", index, written, reference=False)
        draft.payer_account = self._unique_known_account(payer)
        draft.payer_name, draft.name_truncated = self._name_variant(self.customers[payer].name)
        draft.never = "the payer's account belongs to another customer"
        return draft

    def _provider_payout(self) -> _Draft | None:
        provider = self.rng.randrange(len(_PROVIDERS))
        amount = self.rng.randrange(50_000, 5_000_000)
        token = "".join(self.rng.choice("abcdefghijkmnopqrstuvwxyz0123456789") for _ in range(16))
        return _Draft(
            "provider_payout", amount, "EUR", _PROVIDERS[provider][0].upper(),
            self.provider_accounts[provider],
            self.rng.choice(["STRIPE PAYOUT", "Adyen settlement batch", "PAYOUT", "Auszahlung"])
            + f" po_{token}",
            never="a provider's lump sum for many payments",
        )  # fmt: skip

    def _unknown_payer(self) -> _Draft:
        rng = self.rng
        country = rng.choices(_COUNTRIES[:8], weights=_COUNTRY_WEIGHTS[:8])[0]
        if rng.random() < 0.15:
            amount = _gross(rng.choice(_LIST_PRICES), _VAT_PERMILLE[country], "EUR")
        else:
            amount = _amount(rng)
        name = self.names.stranger(country) if rng.random() < 0.95 else None
        account = _iban(rng, country) if rng.random() < 0.95 else None
        return _Draft("unknown_payer", amount, "EUR", name, account, self.texts.noise(),
                      never="not a customer's payment")  # fmt: skip

    def _outgoing(self) -> _Draft:
        rng = self.rng
        roll = rng.random()
        if roll < 0.05 and self.with_open:
            customer = rng.choice(self.with_open)
            index = rng.choice(self.open_of[customer] + self.settled_of[customer])
            draft = _Draft("outgoing", 0, self.issued[index].currency, None, None, None)
            self._payer(customer, draft, account="known")
            written = self._written(index)
            draft.remittance = rng.choice(["Erstattung ", "Refund ", "Gutschrift zu "]) + written
            draft.amount = -rng.randrange(100, self.issued[index].amount + 1)
            draft.never = "money going out: a refund"
            return draft
        country = rng.choices(_COUNTRIES[:8], weights=_COUNTRY_WEIGHTS[:8])[0]
        if roll < 0.35:
            name, text = self.names.stranger(country), self.texts.noise()
            if rng.random() < 0.3:
                supplier = creditor_reference(f"{rng.randrange(10**6, 10**9)}")
                text = f"{text} {supplier}".strip()
        elif roll < 0.55:
            name, text = self.names.person(country), f"Gehalt {rng.randrange(1, 13):02d}/2026"
        elif roll < 0.65:
            name, text = (
                "Finanzamt",
                f"USt-VA {rng.randrange(1, 13):02d}/2026 StNr {rng.randrange(10**9, 10**10)}",
            )
        elif roll < 0.80:
            name, text = None, rng.choice(["Kontoführung", "Entgelt Überweisung", "Kartenzahlung"])
        else:
            name, text = self.names.stranger(country), f"Lastschrift {self.texts.e2e()}"
        amount = -_amount(rng)
        account = _iban(rng, country) if name else None
        return _Draft("outgoing", amount, "EUR", name, account, text,
                      never="money going out")  # fmt: skip


# -- the careful clerk -------------------------------------------------------------------------


class _Clerk:
    """Decides what each line certainly means, knowing what a clerk can know (module docstring)."""

    def __init__(self, customers: list[_CustomerDraft], issued: list[_Issued]) -> None:
        self.customers = customers
        self.issued = issued
        self.remaining = [invoice.amount if invoice.open else 0 for invoice in issued]
        self.exact: dict[str, int] = {}
        self.number_keys: list[tuple[str, ...]] = []
        for index, invoice in enumerate(issued):
            compact = _compact(invoice.number)
            keys = (compact, _compact(_unpadded(invoice.number)), compact[3:])
            self.number_keys.append(keys)
            for key in (*keys, invoice.reference, _runs_key(invoice.number)):
                self.exact[key] = index
        # Invoices by what they are due for (open) or were paid (settled): typo explanations
        # must fit the amount exactly, so only these need comparing.
        self.by_amount: dict[tuple[str, int], list[int]] = {}
        for index, invoice in enumerate(issued):
            self.by_amount.setdefault((invoice.currency, invoice.amount), []).append(index)
        self.account_customers: dict[str, list[int]] = {}
        for index, customer in enumerate(customers):
            for account in customer.known:
                self.account_customers.setdefault(account, []).append(index)
        self.by_key: dict[str, list[int]] = {}
        self.by_cut_key: dict[str, list[int]] = {}
        for index, customer in enumerate(customers):
            self.by_key.setdefault(clerk_name_key(customer.name), []).append(index)
            cut = clerk_name_key(customer.name[:TRUNCATED_NAME])
            self.by_cut_key.setdefault(cut, []).append(index)
        self.open_of: list[list[int]] = [[] for _ in customers]
        for index, invoice in enumerate(issued):
            if invoice.open:
                self.open_of[invoice.customer].append(index)

    def payers(self, draft: _Draft) -> list[int]:
        account = "".join((draft.payer_account or "").split()).upper()
        known = self.account_customers.get(account, [])
        if known and len(known) <= MAX_ACCOUNT_CUSTOMERS:
            return known
        if not draft.payer_name:
            return []
        index = self.by_cut_key if draft.name_truncated else self.by_key
        return index.get(clerk_name_key(draft.payer_name), [])

    def distance(self, typed: str, index: int) -> int:
        keys = (
            (self.issued[index].reference,) if typed.startswith("RF") else self.number_keys[index]
        )
        return min(OSA.distance(typed, key, score_cutoff=MAX_TYPOS) for key in keys)

    def near(self, typed: str, currency: str, amount: int) -> list[int]:
        """Issued invoices within two typos of what was typed, due or paid for exactly amount."""
        pool = self.by_amount.get((currency, amount), [])
        if not pool:
            return []
        if typed.startswith("RF"):
            keys = [self.issued[index].reference for index in pool]
        else:
            keys = [key for index in pool for key in self.number_keys[index]]
        width = 1 if typed.startswith("RF") else 3
        hits = process.extract(typed, keys, scorer=OSA.distance, score_cutoff=MAX_TYPOS, limit=None)
        return sorted({pool[position // width] for _, _, position in hits})

    def judge_named(self, draft: _Draft) -> tuple[dict[int, int] | None, str]:
        """What the references of the line certainly mean, or None and why not."""
        if draft.never:
            return None, draft.never
        payers = self.payers(draft)
        if len(draft.mentions) > 1 or draft.kind == "combined_named":
            return self._several(draft, payers)
        written = draft.mentions[0]
        typed = _compact(written)
        amount, currency = draft.amount, draft.currency
        exact = self.exact.get(typed, self.exact.get(_runs_key(written)))

        def consistent(index: int) -> bool:
            return not payers or self.issued[index].customer in payers

        if (
            exact is not None
            and self.issued[exact].open
            and self.issued[exact].currency == currency
            and consistent(exact)
        ):
            invoice = self.issued[exact]
            due = self.remaining[exact]
            if amount == due:
                return {exact: amount}, "named exactly, the amount fits"
            rivals = [
                index
                for index in self.near(typed, currency, amount)
                if index != exact and self.issued[index].open and consistent(index)
            ]
            if rivals:
                return None, "another open invoice within two typos is due for the amount"
            if amount < due:
                return {exact: amount}, "named exactly, a part payment"
            excess = amount - due
            if any(
                self.remaining[index] == excess and self.issued[index].currency == currency
                for index in self.open_of[invoice.customer]
                if index != exact
            ):
                return None, "the excess is exactly another open invoice of the customer"
            return {exact: due}, "named exactly, an over-payment"
        # Not an open invoice the payer may mean: a typo, or an invoice paid already (or billed
        # in another currency, or another customer's).
        explanations = [index for index in self.near(typed, currency, amount) if consistent(index)]
        if (
            exact is not None
            and consistent(exact)
            and self.issued[exact].currency == currency
            and exact not in explanations
        ):
            explanations.append(exact)
        if len(explanations) != 1:
            return None, f"{len(explanations)} invoices explain the reference"
        (only,) = explanations
        if not self.issued[only].open:
            return None, "the reference is a settled invoice's: paid twice"
        return {only: amount}, "one open invoice within two typos fits the amount"

    def _several(self, draft: _Draft, payers: list[int]) -> tuple[dict[int, int] | None, str]:
        named: dict[int, int] = {}
        for written in draft.mentions:
            index = self.exact.get(_compact(written), self.exact.get(_runs_key(written)))
            if index is None or not self.issued[index].open:
                return None, "a named invoice is not open"
            named[index] = self.remaining[index]
        if {self.issued[index].currency for index in named} != {draft.currency}:
            return None, "named invoices in another currency"
        owners = {self.issued[index].customer for index in named}
        if len(owners) > 1 or (payers and not owners & set(payers)):
            return None, "the named invoices and the payer are not one customer"
        if sum(named.values()) != draft.amount:
            return None, "the amount is not what the named invoices owe together"
        return named, "all named exactly, the amount is their sum"

    def judge_unnamed(self, draft: _Draft) -> tuple[dict[int, int] | None, str]:
        if draft.never:
            return None, draft.never
        payers = self.payers(draft)
        if len(payers) != 1:
            return None, f"the payer is {len(payers)} customers"
        (payer,) = payers
        amount = draft.amount
        view = [
            index
            for index in self.open_of[payer]
            if self.remaining[index] > 0 and self.issued[index].currency == draft.currency
        ]
        singles = [index for index in view if self.remaining[index] == amount]
        if len(singles) == 1:
            return {singles[0]: amount}, "the payer's one open invoice for the amount"
        if singles:
            return None, f"{len(singles)} open invoices of the payer are due for the amount"
        parts = [index for index in view if self.remaining[index] < amount]
        count = _count_subsets([self.remaining[index] for index in parts], amount)
        if count != 1:
            return None, f"{'no' if count == 0 else 'several'} sets of open invoices add up"
        meant = draft.intent
        if sum(meant.values()) == amount and all(
            index in parts and meant[index] == self.remaining[index] for index in meant
        ):
            return dict(meant), "the one set of the payer's open invoices adding up"
        return None, "the one set adding up is not what the payer meant"

    def take(self, allocations: dict[int, int]) -> None:
        for index, amount in allocations.items():
            self.remaining[index] -= amount


def _count_subsets(amounts: list[int], target: int, cap: int = 2) -> int:
    """How many sets of two or more amounts add up to target, counting no further than cap."""
    if len(amounts) < 2:
        return 0
    counts: dict[int, list[int]] = {0: [1, 0, 0]}  # sum -> sets of size 0, 1, 2+
    for amount in amounts:
        grown = dict(counts)
        for total, sizes in counts.items():
            new_total = total + amount
            if new_total > target:
                continue
            slot = grown.get(new_total)
            if slot is None:
                slot = grown[new_total] = [0, 0, 0]
            else:
                slot = grown[new_total] = list(slot)
            slot[1] = min(cap, slot[1] + sizes[0])
            slot[2] = min(cap, slot[2] + sizes[1] + sizes[2])
        counts = grown
        if len(counts) > 400_000:
            return cap  # too many to tell apart: as good as ambiguous
    return counts.get(target, [0, 0, 0])[2]


# -- putting it together ----------------------------------------------------------------------


def _kind_counts(lines: int) -> dict[str, int]:
    """Lines per kind by the largest remainder, so the mix is exact for any statement size."""
    total = sum(KINDS.values())
    exact = {
        kind: Decimal(str(share)) * lines / Decimal(str(total)) for kind, share in KINDS.items()
    }
    counts = {kind: int(value) for kind, value in exact.items()}
    leftover = lines - sum(counts.values())
    for kind in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:leftover]:
        counts[kind] += 1
    return counts


def generate(
    seed: int = 0,
    invoices: int = 50_000,
    lines: int = 100_000,
    *,
    customers: int | None = None,
) -> CashDataset:
    """A world of `customers` (default: one per three open invoices) with `invoices` open
    invoices, and a statement of `lines` lines with the truth for each."""
    if invoices < 1 or lines < 0:
        raise ValueError("invoices must be at least 1 and lines at least 0")
    rng = random.Random(seed)
    names = _NameMaker(rng)
    customer_count = customers if customers is not None else max(4, invoices // 3)
    drafts, provider_accounts = _build_customers(rng, customer_count, names)
    issued = _build_invoices(rng, drafts, invoices)
    statement = _Statement(rng, drafts, issued, names, provider_accounts)

    counts = _kind_counts(lines)
    built: dict[str, list[_Draft]] = {}
    shortfall: dict[str, int] = {}
    for kind in _BUILD_ORDER:
        made: list[_Draft] = []
        for _ in range(counts[kind]):
            draft = statement.build(kind)
            if draft is None:
                shortfall[kind] = shortfall.get(kind, 0) + 1
                draft = statement.build("unknown_payer")
            made.append(draft)
        built[kind] = made
    ordered = [draft for kind in _BUILD_ORDER for draft in built[kind]]
    rng.shuffle(ordered)

    clerk = _Clerk(drafts, issued)
    verdicts: list[tuple[dict[int, int] | None, str] | None] = [None] * len(ordered)
    for position, draft in enumerate(ordered):
        if draft.mentions:
            verdict = clerk.judge_named(draft)
            verdicts[position] = verdict
            if verdict[0] is not None and verdict[0] == draft.intent:
                clerk.take(verdict[0])
    for position, draft in enumerate(ordered):
        if not draft.mentions:
            verdicts[position] = (
                clerk.judge_unnamed(draft) if draft.intent else (None, draft.never or "")
            )

    open_invoices = _open_invoices(drafts, issued)
    settled = tuple(
        ClosedInvoice(
            id=invoice.id,
            number=invoice.number,
            customer_id=drafts[invoice.customer].id,
            currency=invoice.currency,
            total_minor=invoice.amount,
            reference=invoice.reference,
        )
        for invoice in issued
        if not invoice.open
    )
    dates = [
        STATEMENT_START + timedelta(days=d)
        for d in range((STATEMENT_END - STATEMENT_START).days + 1)
    ]
    weekdays = [day for day in dates if day.weekday() < 5]
    statement_lines: list[IncomingLine] = []
    truths: list[LineTruth] = []
    for position, draft in enumerate(ordered):
        statement_lines.append(
            IncomingLine(
                key=f"L{position + 1:07d}",
                amount_minor=draft.amount,
                currency=draft.currency,
                booking_date=weekdays[position * len(weekdays) // max(1, len(ordered))],
                payer_name=draft.payer_name,
                payer_account=draft.payer_account,
                remittance_text=draft.remittance or None,
                creditor_reference=draft.creditor_reference,
                referred_documents=draft.referred,
            )
        )
        verdict = verdicts[position]
        assert verdict is not None
        reading, note = verdict
        meant = tuple(
            sorted(
                (Allocation(issued[index].id, amount) for index, amount in draft.intent.items()),
                key=lambda allocation: allocation.invoice_id,
            )
        )
        matchable = reading is not None and reading == draft.intent
        if reading is not None and not matchable:
            note = "what the line says is not what the payer meant"
        truths.append(LineTruth(draft.kind, matchable, meant, note))
    customer_records = tuple(
        Customer(
            id=draft.id,
            name=draft.name,
            country=draft.country,
            currency=draft.currency,
            accounts=tuple(draft.accounts),
            known_accounts=tuple(draft.known),
            new_account=draft.new_account,
            provider=_PROVIDERS[draft.provider][0] if draft.provider is not None else None,
            subscription_minor=draft.subscription,
        )
        for draft in drafts
    )
    return CashDataset(
        seed=seed,
        customers=customer_records,
        invoices=tuple(open_invoices),
        settled=settled,
        lines=tuple(statement_lines),
        truth=tuple(truths),
        shortfall=shortfall,
    )


def _open_invoices(customers: list[_CustomerDraft], issued: list[_Issued]) -> list[OpenInvoice]:
    known = [frozenset(customer.known) for customer in customers]
    found = [
        OpenInvoice(
            id=invoice.id,
            number=invoice.number,
            customer_id=customers[invoice.customer].id,
            customer_name=customers[invoice.customer].name,
            currency=invoice.currency,
            amount_due_minor=invoice.amount,
            issue_date=invoice.issue,
            due_date=invoice.due,
            reference=invoice.reference,
            payer_accounts=known[invoice.customer],
        )
        for invoice in issued
        if invoice.open
    ]
    found.sort(key=lambda invoice: invoice.id)
    return found
