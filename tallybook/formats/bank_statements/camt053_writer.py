"""Write an ISO 20022 camt.053.001.02 account statement: the demo's bank sends one, and the
cash-application tests and benchmark import what it writes through the real reader.

Amounts are integer minor units in; the file shows them with the currency's decimals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from xml.sax.saxutils import escape

from tallybook.core.money import currency_exponent, from_minor

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"


@dataclass(frozen=True)
class Movement:
    """One booked movement: positive minor units came in, negative went out."""

    booking_date: date
    amount_minor: int
    currency: str
    payer_name: str | None = None
    payer_account: str | None = None
    remittance_text: str | None = None
    creditor_reference: str | None = None
    bank_reference: str | None = None
    referred_documents: tuple[str, ...] = ()


def _amount(minor: int, currency: str) -> str:
    return f"{from_minor(abs(minor), currency):.{currency_exponent(currency)}f}"


def write_camt053(
    movements: Iterable[Movement],
    *,
    account: str,
    currency: str,
    statement_id: str,
    created: date,
    opening_minor: int = 0,
    owner: str = "Account owner",
) -> bytes:
    """One account's statement as UTF-8 bytes, with opening and closing balances that add up."""
    return write_camt053_accounts(
        [(account, currency, movements, opening_minor)],
        statement_id=statement_id,
        created=created,
        owner=owner,
    )


def write_camt053_accounts(
    accounts: Iterable[tuple[str, str, Iterable[Movement], int]],
    *,
    statement_id: str,
    created: date,
    owner: str = "Account owner",
) -> bytes:
    """One message with a statement per (account, currency, movements, opening balance): how a
    bank reports the currency sub-accounts of one customer relationship."""
    statements = [
        _statement(
            movements,
            account=account,
            currency=currency,
            statement_id=f"{statement_id}-{index}" if index else statement_id,
            created=created,
            opening_minor=opening,
            owner=owner,
        )
        for index, (account, currency, movements, opening) in enumerate(accounts)
    ]
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Document xmlns="{NAMESPACE}"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>{escape(statement_id)}</MsgId>"
        f"<CreDtTm>{created.isoformat()}T06:00:00Z</CreDtTm></GrpHdr>\n"
    )
    return (head + "".join(statements) + "</BkToCstmrStmt></Document>\n").encode()


def _statement(
    movements: Iterable[Movement],
    *,
    account: str,
    currency: str,
    statement_id: str,
    created: date,
    opening_minor: int,
    owner: str,
) -> str:

    entries: list[str] = []
    total = 0
    first: date | None = None
    last: date | None = None
    count = 0
    for number, movement in enumerate(movements, start=1):
        count += 1
        total += movement.amount_minor
        first = min(first or movement.booking_date, movement.booking_date)
        last = max(last or movement.booking_date, movement.booking_date)
        credit = movement.amount_minor >= 0
        party = "Dbtr" if credit else "Cdtr"
        amount = _amount(movement.amount_minor, movement.currency)
        parties = ""
        if movement.payer_name or movement.payer_account:
            parties = "<RltdPties>"
            if movement.payer_name:
                parties += f"<{party}><Nm>{escape(movement.payer_name)}</Nm></{party}>"
            if movement.payer_account:
                parties += (
                    f"<{party}Acct><Id><IBAN>{escape(movement.payer_account)}</IBAN></Id>"
                    f"</{party}Acct>"
                )
            parties += "</RltdPties>"
        remittance = ""
        if movement.remittance_text or movement.creditor_reference or movement.referred_documents:
            remittance = "<RmtInf>"
            if movement.remittance_text:
                remittance += f"<Ustrd>{escape(movement.remittance_text)}</Ustrd>"
            for document in movement.referred_documents:
                remittance += (
                    "<Strd><RfrdDocInf><Tp><CdOrPrtry><Cd>CINV</Cd></CdOrPrtry></Tp>"
                    f"<Nb>{escape(document)}</Nb></RfrdDocInf></Strd>"
                )
            if movement.creditor_reference:
                remittance += (
                    "<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp>"
                    f"<Ref>{escape(movement.creditor_reference)}</Ref></CdtrRefInf></Strd>"
                )
            remittance += "</RmtInf>"
        reference = escape(movement.bank_reference or f"{statement_id}-{number:07d}")
        day = movement.booking_date.isoformat()
        entries.append(
            f"<Ntry><NtryRef>{number}</NtryRef>"
            f'<Amt Ccy="{movement.currency}">{amount}</Amt>'
            f"<CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd><Sts>BOOK</Sts>"
            f"<BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>"
            f"<AcctSvcrRef>{reference}</AcctSvcrRef>"
            "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>"
            f"{'RCDT' if credit else 'ICDT'}</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn>"
            "</BkTxCd><NtryDtls><TxDtls>"
            f"<Refs><AcctSvcrRef>{reference}</AcctSvcrRef></Refs>"
            f'<AmtDtls><TxAmt><Amt Ccy="{movement.currency}">{amount}</Amt></TxAmt></AmtDtls>'
            f"{parties}{remittance}</TxDtls></NtryDtls></Ntry>\n"
        )
    start = (first or created).isoformat()
    end = (last or created).isoformat()
    closing = opening_minor + total

    def balance(code: str, minor: int, day: str) -> str:
        side = "CRDT" if minor >= 0 else "DBIT"
        return (
            f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
            f'<Amt Ccy="{currency}">{_amount(minor, currency)}</Amt>'
            f"<CdtDbtInd>{side}</CdtDbtInd><Dt><Dt>{day}</Dt></Dt></Bal>"
        )

    head = (
        f"<Stmt><Id>{escape(statement_id)}</Id>"
        f"<CreDtTm>{created.isoformat()}T06:00:00Z</CreDtTm>"
        f"<Acct><Id><IBAN>{escape(account)}</IBAN></Id><Ccy>{currency}</Ccy>"
        f"<Ownr><Nm>{escape(owner)}</Nm></Ownr></Acct>"
        f"{balance('OPBD', opening_minor, start)}{balance('CLBD', closing, end)}"
        f"<TxsSummry><TtlNtries><NbOfNtries>{count}</NbOfNtries></TtlNtries></TxsSummry>\n"
    )
    return head + "".join(entries) + "</Stmt>\n"
