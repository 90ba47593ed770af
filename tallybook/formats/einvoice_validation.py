"""Checks an e-invoice the way its receiver will: XML Schema, then the official rule sets.

UBL documents: the UBL 2.1 XSD, the CEN EN 16931 rules and the Peppol BIS Billing 3.0 rules;
CII (Factur-X / ZUGFeRD) documents: the CEN EN 16931 rules for CII. The rules are the official
schematron compiled to XSLT 2.0, run with Saxon-HE (saxonche); the reference files are read
from the folder TALLYBOOK_EINVOICE_REFERENCE names, never copied into the project. A document
is valid when the schema passes and no rule reports a fatal failure.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from tallybook.config import einvoice_reference_folder

UBL_INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
UBL_CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
CII_NS = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
SVRL_NS = "http://purl.oclc.org/dsdl/svrl"

# (syntax, root element) -> (schema file, rule sets); paths relative to the reference folder.
DOCUMENTS: dict[tuple[str, str], tuple[str | None, tuple[tuple[str, str], ...]]] = {
    (UBL_INVOICE_NS, "Invoice"): (
        "ubl-2.1/maindoc/UBL-Invoice-2.1.xsd",
        (
            ("EN16931-UBL", "xslt/EN16931-UBL-validation.xslt"),
            ("PEPPOL-EN16931-UBL", "xslt/PEPPOL-EN16931-UBL.xslt"),
        ),
    ),
    (UBL_CREDIT_NOTE_NS, "CreditNote"): (
        "ubl-2.1/maindoc/UBL-CreditNote-2.1.xsd",
        (
            ("EN16931-UBL", "xslt/EN16931-UBL-validation.xslt"),
            ("PEPPOL-EN16931-UBL", "xslt/PEPPOL-EN16931-UBL.xslt"),
        ),
    ),
    (CII_NS, "CrossIndustryInvoice"): (
        None,  # the reference folder has no CII schema; the EN 16931 CII rules still apply
        (("EN16931-CII", "xslt/EN16931-CII-validation.xslt"),),
    ),
}


class ReferenceMissing(RuntimeError):
    """The official schemas and rules are not where the setting says."""


@dataclass(frozen=True)
class RuleFailure:
    rule_set: str
    rule_id: str
    flag: str  # fatal | warning | information
    location: str
    message: str


@dataclass(frozen=True)
class ValidationReport:
    syntax: str  # ubl | cii | unknown
    document_type: str
    schema: str | None  # the XSD checked, if any
    schema_errors: tuple[str, ...]
    rule_sets: tuple[str, ...]
    failures: tuple[RuleFailure, ...]

    @property
    def fatal(self) -> tuple[RuleFailure, ...]:
        return tuple(f for f in self.failures if f.flag == "fatal")

    @property
    def warnings(self) -> tuple[RuleFailure, ...]:
        return tuple(f for f in self.failures if f.flag != "fatal")

    @property
    def valid(self) -> bool:
        return not self.schema_errors and not self.fatal


_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=False
)


class Validator:
    """Compiles each schema and stylesheet once (about a second each) and reuses them.

    Saxon runs one transformation at a time per process: a lock serialises them, so the
    validator may be shared by the threads of a server.
    """

    def __init__(self, reference: Path) -> None:
        self.reference = Path(reference)
        missing = [
            path
            for schema, rules in DOCUMENTS.values()
            for path in ([schema] if schema else []) + [file for _, file in rules]
            if not (self.reference / path).is_file()
        ]
        if missing:
            raise ReferenceMissing(
                f"the e-invoice reference files are missing from {self.reference} "
                f"({missing[0]}); set TALLYBOOK_EINVOICE_REFERENCE to the folder with the "
                "UBL 2.1 schemas and the EN 16931 / Peppol rules"
            )
        self._lock = threading.Lock()
        self._schemas: dict[str, etree.XMLSchema] = {}
        self._stylesheets: dict[str, Any] = {}
        self._processor: Any = None

    def _schema(self, path: str) -> etree.XMLSchema:
        if path not in self._schemas:
            self._schemas[path] = etree.XMLSchema(etree.parse(str(self.reference / path)))
        return self._schemas[path]

    def _stylesheet(self, path: str) -> Any:
        if path not in self._stylesheets:
            if self._processor is None:
                from saxonche import PySaxonProcessor

                self._processor = PySaxonProcessor(license=False)
            compiler = self._processor.new_xslt30_processor()
            self._stylesheets[path] = compiler.compile_stylesheet(
                stylesheet_file=str(self.reference / path)
            )
        return self._stylesheets[path]

    def warm_up(self) -> None:
        """Compile everything now rather than on the first document."""
        with self._lock:
            for schema, rules in DOCUMENTS.values():
                if schema:
                    self._schema(schema)
                for _, path in rules:
                    self._stylesheet(path)

    def validate(self, xml: bytes | str) -> ValidationReport:
        data = xml.encode("utf-8") if isinstance(xml, str) else xml
        try:
            tree = etree.fromstring(data, _PARSER)
        except etree.XMLSyntaxError as error:
            return ValidationReport(
                "unknown", "unknown", None, (f"not well-formed XML: {error}",), (), ()
            )
        qname = etree.QName(tree)
        known = DOCUMENTS.get((qname.namespace or "", qname.localname))
        if known is None:
            return ValidationReport(
                "unknown",
                qname.localname,
                None,
                (
                    f"the root element {{{qname.namespace}}}{qname.localname} is not a UBL "
                    "Invoice or CreditNote, nor a CII CrossIndustryInvoice",
                ),
                (),
                (),
            )
        schema_path, rules = known
        syntax = "cii" if qname.namespace == CII_NS else "ubl"
        text = etree.tostring(tree, encoding="unicode")
        with self._lock:
            schema_errors: tuple[str, ...] = ()
            if schema_path:
                schema = self._schema(schema_path)
                if not schema.validate(tree):
                    schema_errors = tuple(
                        f"line {e.line}: {e.message}"
                        for e in schema.error_log  # type: ignore[attr-defined]
                    )
            failures: list[RuleFailure] = []
            node = None
            for name, path in rules:
                stylesheet = self._stylesheet(path)
                if node is None:
                    node = self._processor.parse_xml(xml_text=text)
                svrl = stylesheet.transform_to_string(xdm_node=node)
                failures.extend(_failures(name, svrl))
        return ValidationReport(
            syntax,
            qname.localname,
            Path(schema_path).name if schema_path else None,
            schema_errors,
            tuple(name for name, _ in rules),
            tuple(failures),
        )


def _failures(rule_set: str, svrl: str) -> list[RuleFailure]:
    report = etree.fromstring(svrl.encode("utf-8"), _PARSER)
    found = []
    for element in report.iter(f"{{{SVRL_NS}}}failed-assert", f"{{{SVRL_NS}}}successful-report"):
        flag = element.get("flag")
        if element.tag.endswith("successful-report") and not flag:
            continue  # a report without a flag is information, not a finding
        text = element.findtext(f"{{{SVRL_NS}}}text") or ""
        found.append(
            RuleFailure(
                rule_set,
                element.get("id") or "",
                flag or "fatal",
                element.get("location") or "",
                " ".join(text.split()),
            )
        )
    return found


_validators: dict[Path, Validator] = {}
_validators_lock = threading.Lock()


def validator(reference: Path | None = None) -> Validator:
    """The shared validator of a reference folder (default: the configured one)."""
    folder = Path(reference or einvoice_reference_folder()).resolve()
    with _validators_lock:
        if folder not in _validators:
            _validators[folder] = Validator(folder)
        return _validators[folder]


def validate(xml: bytes | str, reference: Path | None = None) -> ValidationReport:
    return validator(reference).validate(xml)
