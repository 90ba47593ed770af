"""Build the two fonts PDF documents are set in: "Tallybook Sans" regular and bold.

They are DejaVu Sans cut down to the letters most invoices are written in (Latin with its
extensions, the currency signs and typographic punctuation), without hinting, layout or math
tables or glyph names; other scripts (Greek, Cyrillic...) fall back to the system's DejaVu.
Small fonts can be embedded whole in every PDF, which is faster than subsetting them per
document, and bundled ones make every machine set the same text the same way. The DejaVu
licence asks a modified font to be renamed: hence the family name.

Run once, from the repository root, on a machine with Debian's fonts-dejavu-core:
    .venv/bin/python tallybook/templates/documents/fonts/build_fonts.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

SOURCE = Path("/usr/share/fonts/truetype/dejavu")
HERE = Path(__file__).resolve().parent
FAMILY = "Tallybook Sans"
FACES = (
    ("DejaVuSans.ttf", "TallybookSans.ttf", "Book"),
    ("DejaVuSans-Bold.ttf", "TallybookSans-Bold.ttf", "Bold"),
)
CODEPOINTS = [
    (0x0020, 0x007E),  # Basic Latin
    (0x00A0, 0x017F),  # Latin-1 and Latin Extended-A (Polish, Czech, Hungarian, Turkish...)
    (0x0218, 0x021B),  # Romanian s and t with comma below
    (0x1E9E, 0x1E9E),  # capital sharp s
    (0x2009, 0x200A),  # thin and hair spaces
    (0x2010, 0x2027),  # dashes, quotes, bullet, ellipsis
    (0x202F, 0x2044),  # narrow no-break space (French thousands), per mille, guillemets
    (0x20A0, 0x20C0),  # currency signs: euro, rupee, lira, ruble...
    (0x2116, 0x2116),  # numero
    (0x2122, 0x2122),  # trade mark
    (0x2212, 0x2212),  # minus sign
]


def build(source: Path = SOURCE, target: Path = HERE) -> list[Path]:
    written = []
    unicodes = [code for first, last in CODEPOINTS for code in range(first, last + 1)]
    for original, name, style in FACES:
        options = subset.Options()
        options.layout_features = []
        options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM", "MATH", "gasp"]
        options.hinting = False
        options.glyph_names = False
        options.notdef_outline = True
        options.name_IDs = []
        options.name_legacy = False
        # The timestamp is the original's, so that rebuilding gives the same bytes.
        font = TTFont(source / original, recalcTimestamp=False)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=unicodes)
        subsetter.subset(font)
        names = font["name"]
        full = FAMILY if style == "Book" else f"{FAMILY} {style}"
        postscript = full.replace(" ", "-")
        for name_id, text in (
            (0, "Copyright (c) 2003 by Bitstream, Inc. All Rights Reserved. DejaVu changes "
             "are in public domain. Cut down for Tallybook; see LICENSE-DejaVu.txt."),
            (1, FAMILY),
            (2, style),
            (3, postscript),
            (4, full),
            (6, postscript),
        ):
            names.setName(text, name_id, 3, 1, 0x409)
        font.save(target / name)
        written.append(target / name)
    return written


if __name__ == "__main__":
    for path in build(*(Path(arg) for arg in sys.argv[1:])):
        print(f"{path} ({path.stat().st_size} bytes)")
