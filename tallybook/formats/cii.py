"""UN/CEFACT CII CrossIndustryInvoice (D16B) for Factur-X / ZUGFeRD, EN 16931 profile.

Element order follows the Factur-X EN 16931 schema; the guideline is `urn:cen.eu:en16931:2017`
(Factur-X and ZUGFeRD 2 read it as their EN 16931 / COMFORT profile). This module writes the
XML only: a Factur-X PDF embeds it in a PDF/A-3 (as factur-x.xml, e.g. with the `factur-x`
library) once the PDF renderer exists. The output is deterministic.
"""

from __future__ import annotations

from datetime import date

from lxml import etree

from tallybook.core.einvoice import (
    CommercialDocument,
    DocumentKind,
    Party,
    TaxCategory,
    VatCategory,
    decimal_text,
)

GUIDELINE_ID = "urn:cen.eu:en16931:2017"
RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
NSMAP = {"rsm": RSM, "qdt": QDT, "ram": RAM, "udt": UDT}


def _el(parent: etree._Element, name: str, text: str | None = None, **attributes: str):
    namespace, _, local = name.partition(":")
    element = etree.SubElement(parent, f"{{{NSMAP[namespace]}}}{local}", attributes)
    if text is not None:
        element.text = text
    return element


def _opt(parent: etree._Element, name: str, text: str | None, **attributes: str) -> None:
    """An element only when there is a value: empty elements mean nothing to a receiver."""
    if text is not None and str(text).strip():
        _el(parent, name, str(text), **attributes)


def _date(parent: etree._Element, name: str, day: date, kind: str = "udt") -> None:
    # Format 102 is CCYYMMDD.
    _el(_el(parent, name), f"{kind}:DateTimeString", day.strftime("%Y%m%d"), format="102")


def to_cii(document: CommercialDocument) -> bytes:
    """The document as a CrossIndustryInvoice (UTF-8 with declaration)."""
    money = document.amount
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap=NSMAP)
    context = _el(root, "rsm:ExchangedDocumentContext")
    _el(_el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", GUIDELINE_ID)

    header = _el(root, "rsm:ExchangedDocument")
    _el(header, "ram:ID", document.number)
    _el(header, "ram:TypeCode", document.type_code)
    _date(header, "ram:IssueDateTime", document.issue_date)
    if document.note:
        _el(_el(header, "ram:IncludedNote"), "ram:Content", document.note)

    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for line in document.lines:
        item = _el(transaction, "ram:IncludedSupplyChainTradeLineItem")
        _el(_el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", line.line_id)
        product = _el(item, "ram:SpecifiedTradeProduct")
        _opt(product, "ram:SellerAssignedID", line.item_id)
        _el(product, "ram:Name", line.name)
        _opt(product, "ram:Description", line.description)
        price = _el(_el(item, "ram:SpecifiedLineTradeAgreement"), "ram:NetPriceProductTradePrice")
        _el(price, "ram:ChargeAmount", decimal_text(line.price))
        if line.base_quantity != 1:
            _el(
                price,
                "ram:BasisQuantity",
                decimal_text(line.base_quantity),
                unitCode=line.unit_code,
            )
        _el(
            _el(item, "ram:SpecifiedLineTradeDelivery"),
            "ram:BilledQuantity",
            decimal_text(line.quantity),
            unitCode=line.unit_code,
        )
        settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
        _category(_el(settlement, "ram:ApplicableTradeTax"), line.category)
        if line.period is not None:
            period = _el(settlement, "ram:BillingSpecifiedPeriod")
            _date(period, "ram:StartDateTime", line.period[0])
            _date(period, "ram:EndDateTime", line.period[1])
        _el(
            _el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation"),
            "ram:LineTotalAmount",
            money(line.net_minor),
        )

    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    _opt(agreement, "ram:BuyerReference", document.buyer_reference)
    _party(_el(agreement, "ram:SellerTradeParty"), document.seller)
    _party(_el(agreement, "ram:BuyerTradeParty"), document.buyer)
    if document.order_reference:
        _el(
            _el(agreement, "ram:BuyerOrderReferencedDocument"),
            "ram:IssuerAssignedID",
            document.order_reference,
        )
    _el(transaction, "ram:ApplicableHeaderTradeDelivery")

    settlement = _el(transaction, "ram:ApplicableHeaderTradeSettlement")
    _opt(settlement, "ram:PaymentReference", document.payment_reference)
    _el(settlement, "ram:InvoiceCurrencyCode", document.currency)
    account = document.payment_account
    if account is not None and document.kind is not DocumentKind.CREDIT_NOTE:
        means = _el(settlement, "ram:SpecifiedTradeSettlementPaymentMeans")
        # 58: SEPA credit transfer, for euro payments into an IBAN; 30: any credit transfer.
        _el(means, "ram:TypeCode", "58" if document.currency == "EUR" else "30")
        creditor = _el(means, "ram:PayeePartyCreditorFinancialAccount")
        _el(creditor, "ram:IBANID", account.iban)
        _opt(creditor, "ram:AccountName", account.account_name)
        if account.bic:
            _el(
                _el(means, "ram:PayeeSpecifiedCreditorFinancialInstitution"),
                "ram:BICID",
                account.bic,
            )
    for row in document.vat_breakdown:
        tax = _el(settlement, "ram:ApplicableTradeTax")
        _category(
            tax, row.category, calculated=money(row.tax_minor), basis=money(row.taxable_minor)
        )
    for allowance in document.allowances:
        element = _el(settlement, "ram:SpecifiedTradeAllowanceCharge")
        _el(_el(element, "ram:ChargeIndicator"), "udt:Indicator", "false")
        _el(element, "ram:ActualAmount", money(allowance.amount_minor))
        _el(element, "ram:ReasonCode", allowance.reason_code)
        _el(element, "ram:Reason", allowance.reason)
        _category(_el(element, "ram:CategoryTradeTax"), allowance.category)
    if document.payment_terms or document.due_date:
        terms = _el(settlement, "ram:SpecifiedTradePaymentTerms")
        _opt(terms, "ram:Description", document.payment_terms)
        if document.due_date is not None:
            _date(terms, "ram:DueDateDateTime", document.due_date)
    totals = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(totals, "ram:LineTotalAmount", money(document.line_total_minor))
    if document.allowance_total_minor:
        _el(totals, "ram:AllowanceTotalAmount", money(document.allowance_total_minor))
    _el(totals, "ram:TaxBasisTotalAmount", money(document.tax_exclusive_minor))
    _el(totals, "ram:TaxTotalAmount", money(document.tax_minor), currencyID=document.currency)
    _el(totals, "ram:GrandTotalAmount", money(document.tax_inclusive_minor))
    if document.prepaid_minor:
        _el(totals, "ram:TotalPrepaidAmount", money(document.prepaid_minor))
    _el(totals, "ram:DuePayableAmount", money(document.payable_minor))
    if document.preceding_invoice is not None:
        reference = _el(settlement, "ram:InvoiceReferencedDocument")
        _el(reference, "ram:IssuerAssignedID", document.preceding_invoice.number)
        if document.preceding_invoice.issue_date is not None:
            _date(
                reference,
                "ram:FormattedIssueDateTime",
                document.preceding_invoice.issue_date,
                kind="qdt",
            )

    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _party(element: etree._Element, party: Party) -> None:
    _opt(element, "ram:ID", party.identifier)
    _el(element, "ram:Name", party.name)
    if party.legal_registration_id:
        _el(_el(element, "ram:SpecifiedLegalOrganization"), "ram:ID", party.legal_registration_id)
    if party.contact_email:
        contact = _el(element, "ram:DefinedTradeContact")
        _el(_el(contact, "ram:EmailURIUniversalCommunication"), "ram:URIID", party.contact_email)
    address = _el(element, "ram:PostalTradeAddress")
    _opt(address, "ram:PostcodeCode", party.address.postal_code)
    _opt(address, "ram:LineOne", party.address.line1)
    _opt(address, "ram:LineTwo", party.address.line2)
    _opt(address, "ram:CityName", party.address.city)
    _el(address, "ram:CountryID", party.address.country)
    _opt(address, "ram:CountrySubDivisionName", party.address.region)
    if party.electronic_address is not None:
        _el(
            _el(element, "ram:URIUniversalCommunication"),
            "ram:URIID",
            party.electronic_address.value,
            schemeID=party.electronic_address.scheme,
        )
    if party.vat_id:
        _el(_el(element, "ram:SpecifiedTaxRegistration"), "ram:ID", party.vat_id, schemeID="VA")


def _category(
    element: etree._Element,
    category: TaxCategory,
    *,
    calculated: str | None = None,
    basis: str | None = None,
) -> None:
    """A trade tax: with amounts and exemption reasons in the VAT breakdown, bare elsewhere."""
    breakdown = calculated is not None
    if breakdown:
        _el(element, "ram:CalculatedAmount", calculated)
    _el(element, "ram:TypeCode", "VAT")
    if breakdown:
        _opt(element, "ram:ExemptionReason", category.exemption_reason)
        _el(element, "ram:BasisAmount", basis)
    _el(element, "ram:CategoryCode", category.code.value)
    if breakdown:
        _opt(element, "ram:ExemptionReasonCode", category.exemption_reason_code)
    if category.code is not VatCategory.OUTSIDE_SCOPE and category.percent is not None:
        _el(element, "ram:RateApplicablePercent", decimal_text(category.percent))
