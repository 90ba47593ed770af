"""Reading untrusted XML statement files (camt.053, OFX 2.x) safely with lxml."""

from __future__ import annotations

from lxml import etree

from .model import StatementError


def parse_xml(data: bytes, *, format: str) -> etree._Element:
    """Parse XML bytes with entity expansion, DTD loading and network access all off.

    Bank files never need a DTD; one that declares entities is refused outright, since that is
    how "billion laughs" and external-entity attacks arrive.
    """
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as error:
        line = error.lineno if error.lineno else None
        raise StatementError(
            f"the file is not complete, well-formed XML ({error.msg}); it may have been cut off "
            "in transfer, ask the bank for it again",
            format=format,
            line=line,
        ) from None
    if root is None:
        raise StatementError("the file is empty", format=format)
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise StatementError(
            "the file declares a document type (DTD); bank statements never do, so it is refused",
            format=format,
        )
    return root


def local_name(element: etree._Element) -> str:
    return etree.QName(element).localname
