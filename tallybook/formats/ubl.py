"""UBL 2.1 Invoice and CreditNote following Peppol BIS Billing 3.0, from the e-invoice model.

Element order follows the UBL 2.1 schemas; what is written follows the Peppol BIS 3 rules
(one note, VAT identifiers only where the VAT categories allow them, no empty elements).
The output is deterministic: the same document always gives the same bytes.
"""

from __future__ import annotations

from lxml import etree

from tallybook.core.einvoice import (
    CommercialDocument,
    DocumentKind,
    Party,
    TaxCategory,
    VatCategory,
    decimal_text,
)

CUSTOMIZATION_ID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"


def _cac(parent: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{CAC}}}{name}")


def _cbc(
    parent: etree._Element, name: str, text: str | None, **attributes: str
) -> etree._Element | None:
    """A basic element; nothing at all when there is no value (Peppol refuses empty ones)."""
    if text is None or not str(text).strip():
        return None
    element = etree.SubElement(parent, f"{{{CBC}}}{name}", attributes)
    element.text = str(text)
    return element


def to_ubl(document: CommercialDocument) -> bytes:
    """The document as UBL 2.1 XML (UTF-8 with declaration)."""
    credit = document.kind is DocumentKind.CREDIT_NOTE
    namespace = CREDIT_NOTE_NS if credit else INVOICE_NS
    root = etree.Element(
        f"{{{namespace}}}{'CreditNote' if credit else 'Invoice'}",
        nsmap={None: namespace, "cac": CAC, "cbc": CBC},
    )
    money = document.amount
    currency = {"currencyID": document.currency}

    _cbc(root, "CustomizationID", CUSTOMIZATION_ID)
    _cbc(root, "ProfileID", PROFILE_ID)
    _cbc(root, "ID", document.number)
    _cbc(root, "IssueDate", document.issue_date.isoformat())
    if not credit and document.due_date is not None:
        _cbc(root, "DueDate", document.due_date.isoformat())
    _cbc(root, "CreditNoteTypeCode" if credit else "InvoiceTypeCode", document.type_code)
    _cbc(root, "Note", document.note)
    _cbc(root, "DocumentCurrencyCode", document.currency)
    _cbc(root, "BuyerReference", document.buyer_reference)
    if document.order_reference:
        _cbc(_cac(root, "OrderReference"), "ID", document.order_reference)
    if document.preceding_invoice is not None:
        reference = _cac(_cac(root, "BillingReference"), "InvoiceDocumentReference")
        _cbc(reference, "ID", document.preceding_invoice.number)
        if document.preceding_invoice.issue_date is not None:
            _cbc(reference, "IssueDate", document.preceding_invoice.issue_date.isoformat())

    _party(_cac(root, "AccountingSupplierParty"), document.seller)
    _party(_cac(root, "AccountingCustomerParty"), document.buyer)

    account = document.payment_account
    if account is not None and document.kind is not DocumentKind.CREDIT_NOTE:
        means = _cac(root, "PaymentMeans")
        # 58: SEPA credit transfer, for euro payments into an IBAN; 30: any credit transfer.
        code = "58" if document.currency == "EUR" else "30"
        _cbc(means, "PaymentMeansCode", code)
        _cbc(means, "PaymentID", document.payment_reference)
        payee = _cac(means, "PayeeFinancialAccount")
        _cbc(payee, "ID", account.iban)
        _cbc(payee, "Name", account.account_name)
        if account.bic:
            _cbc(_cac(payee, "FinancialInstitutionBranch"), "ID", account.bic)
    if document.payment_terms:
        _cbc(_cac(root, "PaymentTerms"), "Note", document.payment_terms)

    for allowance in document.allowances:
        element = _cac(root, "AllowanceCharge")
        _cbc(element, "ChargeIndicator", "false")
        _cbc(element, "AllowanceChargeReasonCode", allowance.reason_code)
        _cbc(element, "AllowanceChargeReason", allowance.reason)
        _cbc(element, "Amount", money(allowance.amount_minor), **currency)
        _tax_category(element, "TaxCategory", allowance.category, reasons=False)

    total = _cac(root, "TaxTotal")
    _cbc(total, "TaxAmount", money(document.tax_minor), **currency)
    for row in document.vat_breakdown:
        subtotal = _cac(total, "TaxSubtotal")
        _cbc(subtotal, "TaxableAmount", money(row.taxable_minor), **currency)
        _cbc(subtotal, "TaxAmount", money(row.tax_minor), **currency)
        _tax_category(subtotal, "TaxCategory", row.category, reasons=True)

    totals = _cac(root, "LegalMonetaryTotal")
    _cbc(totals, "LineExtensionAmount", money(document.line_total_minor), **currency)
    _cbc(totals, "TaxExclusiveAmount", money(document.tax_exclusive_minor), **currency)
    _cbc(totals, "TaxInclusiveAmount", money(document.tax_inclusive_minor), **currency)
    if document.allowance_total_minor:
        _cbc(totals, "AllowanceTotalAmount", money(document.allowance_total_minor), **currency)
    if document.prepaid_minor:
        _cbc(totals, "PrepaidAmount", money(document.prepaid_minor), **currency)
    _cbc(totals, "PayableAmount", money(document.payable_minor), **currency)

    for line in document.lines:
        element = _cac(root, "CreditNoteLine" if credit else "InvoiceLine")
        _cbc(element, "ID", line.line_id)
        _cbc(
            element,
            "CreditedQuantity" if credit else "InvoicedQuantity",
            decimal_text(line.quantity),
            unitCode=line.unit_code,
        )
        _cbc(element, "LineExtensionAmount", money(line.net_minor), **currency)
        if line.period is not None:
            period = _cac(element, "InvoicePeriod")
            _cbc(period, "StartDate", line.period[0].isoformat())
            _cbc(period, "EndDate", line.period[1].isoformat())
        item = _cac(element, "Item")
        _cbc(item, "Description", line.description)
        _cbc(item, "Name", line.name)
        if line.item_id:
            _cbc(_cac(item, "SellersItemIdentification"), "ID", line.item_id)
        _tax_category(item, "ClassifiedTaxCategory", line.category, reasons=False)
        price = _cac(element, "Price")
        _cbc(price, "PriceAmount", decimal_text(line.price), **currency)
        if line.base_quantity != 1:
            _cbc(price, "BaseQuantity", decimal_text(line.base_quantity), unitCode=line.unit_code)

    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _party(parent: etree._Element, party: Party) -> None:
    element = _cac(parent, "Party")
    if party.electronic_address is not None:
        _cbc(
            element,
            "EndpointID",
            party.electronic_address.value,
            schemeID=party.electronic_address.scheme,
        )
    if party.identifier:
        _cbc(_cac(element, "PartyIdentification"), "ID", party.identifier)
    address = _cac(element, "PostalAddress")
    _cbc(address, "StreetName", party.address.line1)
    _cbc(address, "AdditionalStreetName", party.address.line2)
    _cbc(address, "CityName", party.address.city)
    _cbc(address, "PostalZone", party.address.postal_code)
    _cbc(address, "CountrySubentity", party.address.region)
    _cbc(_cac(address, "Country"), "IdentificationCode", party.address.country)
    if party.vat_id:
        scheme = _cac(element, "PartyTaxScheme")
        _cbc(scheme, "CompanyID", party.vat_id)
        _cbc(_cac(scheme, "TaxScheme"), "ID", "VAT")
    legal = _cac(element, "PartyLegalEntity")
    _cbc(legal, "RegistrationName", party.name)
    _cbc(legal, "CompanyID", party.legal_registration_id)
    if party.contact_email:
        _cbc(_cac(element, "Contact"), "ElectronicMail", party.contact_email)


def _tax_category(
    parent: etree._Element, name: str, category: TaxCategory, *, reasons: bool
) -> None:
    element = _cac(parent, name)
    _cbc(element, "ID", category.code.value)
    if category.code is not VatCategory.OUTSIDE_SCOPE and category.percent is not None:
        _cbc(element, "Percent", decimal_text(category.percent))
    if reasons:
        # The reason belongs to the VAT breakdown (BT-120/121), not to lines or allowances.
        _cbc(element, "TaxExemptionReasonCode", category.exemption_reason_code)
        _cbc(element, "TaxExemptionReason", category.exemption_reason)
    _cbc(_cac(element, "TaxScheme"), "ID", "VAT")
