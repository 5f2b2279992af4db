"""JATS XML (PMC, PLOS) -> plain text, one paragraph per line.

    text = jats_to_text(xml_bytes, "PMC123.xml")   # the name goes into error messages
    article = parse_article(xml_bytes, "PMC123.xml"); article.get("article-type"); text = article_text(article)
    text = strip_numeric_citations(plain_text)     # "[1, 2]" and "()" out of text that is not XML

Kept: the article title, every <abstract> of the front matter (including PLOS author/editor summaries),
and the <body>: section titles and paragraphs (also inside lists, boxed text, quotes) and **figure
captions** (caption title and paragraphs, each its own line: they are real domain prose; a figure nested
inside a paragraph is emitted after that paragraph).
Dropped: back matter (references, acknowledgements, funding, footnotes), sub-articles (PLOS decision
letters), floats-group, tables and table-wraps (with their captions and footers), graphics and media,
formulas (inline and display, MathML and TeX), supplementary material, labels ("Figure 1", "1."), code,
and citation markers: every <xref ref-type="bibr"> together with the brackets, commas, semicolons and
dashes left around it ("shown [1], [3]-[5]." -> "shown."; "(Smith et al. 2001; Jones 2003)" -> ""),
numeric citations typed as plain text ("[28]"), and brackets left empty by a dropped formula ("()").

Parsing is defusedxml over xml.etree (expat): the DOCTYPE's external DTD is never loaded, no external entity is
ever resolved, and a document declaring entities of its own (<!ENTITY ...) is refused, in any encoding. Named
character entities that the DTD would define (&lsqb;, &ndash;, ...) are replaced by their characters (HTML5 table)
before parsing (UTF-16/32 documents are turned into UTF-8 first), unknown ones are dropped. Namespaces are ignored
(tags are compared by local name).
"""

import html.entities
import re
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

SKIP = {
    "table-wrap", "table", "table-wrap-foot", "graphic", "inline-graphic", "media", "disp-formula",
    "inline-formula", "math", "tex-math", "alternatives", "ref-list", "supplementary-material", "fn",
    "fn-group", "label", "object-id", "code", "preformat", "sub-article", "floats-group",
}
# block elements that JATS allows inside a <p>: emitted as their own lines after the paragraph
BLOCK_IN_P = {"fig", "fig-group", "list", "disp-quote", "boxed-text", "statement", "def-list"}
XML_ENTITIES = {b"amp", b"lt", b"gt", b"quot", b"apos"}
CITE = "\x00"  # stands for one removed citation while cleaning (cannot occur in XML text)
SEP = r"[\s,;\-\u2010-\u2015\u2212]"  # what joins citations: spaces, commas, semicolons, hyphens and dashes
CITE_GROUP = rf"(?:[\[(]{SEP}*{CITE}(?:{SEP}|{CITE})*[\])]|{CITE})"
# Each pattern starts at the beginning of a whitespace run ((?<!\s)) and takes the run possessively (\s*+): a run
# is scanned once, so cleaning stays linear in its length (a plain \s* retried at every position is quadratic).
WS = r"(?<!\s)\s*+"
CITE_RUN = re.compile(rf"{WS}{CITE_GROUP}(?:{SEP}*{CITE_GROUP})*")
# citations typed as plain text ("[28]", "[5-8]", "[21, 22]", "[3]-[5]") and brackets emptied by dropped formulas
NUMERIC_CITATION = re.compile(rf"{WS}(?:\[\d+(?:{SEP}+\d+)*\](?:{SEP}*\[\d+(?:{SEP}+\d+)*\])*|\(\s*\)|\[\s*\])")
# UTF-16/32 documents, told by their first bytes (XML 1.0 appendix F; UTF-32 before UTF-16, whose BOM it extends)
WIDE_ENCODINGS = {b"\x00\x00\xfe\xff": "utf-32", b"\xff\xfe\x00\x00": "utf-32", b"\x00\x00\x00<": "utf-32-be",
                  b"<\x00\x00\x00": "utf-32-le", b"\xfe\xff": "utf-16", b"\xff\xfe": "utf-16", b"\x00<\x00?": "utf-16-be",
                  b"<\x00?\x00": "utf-16-le"}
XML_DECL_ENCODING = re.compile(r"""\A(<\?xml\s[^>]*?)\s+encoding\s*=\s*["'][^"']*["']""")


def _entity(m: re.Match) -> bytes:
    name = m.group(1)
    if name in XML_ENTITIES:
        return m.group(0)
    chars = html.entities.html5.get(name.decode("ascii") + ";", "")
    return "".join(f"&#{ord(c)};" for c in chars).encode("ascii")


def _as_utf8(xml: bytes, name: str) -> bytes:
    """A UTF-16/32 document as UTF-8 without its encoding declaration (lines unchanged), so that the entity pass
    of parse_jats sees its references as ASCII bytes; any other document as it is."""
    codec = next((c for start, c in WIDE_ENCODINGS.items() if xml.startswith(start)), None)
    if codec is None:
        return xml
    try:
        text = xml.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not {codec} text ({e})") from None
    return XML_DECL_ENCODING.sub(r"\1", text, count=1).encode()


def parse_jats(xml: bytes, name: str = "<bytes>") -> ET.Element:
    """Parse safely (see module docstring); errors name the file, line and column."""
    xml = re.sub(rb"&([A-Za-z][A-Za-z0-9]*);", _entity, _as_utf8(xml, name))
    try:  # defusedxml: entity declarations refused in any encoding, no external DTD or entity ever loaded
        root = defused_fromstring(xml, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise ValueError(f"{name}: refusing an XML document that declares entities (<!ENTITY ...>) or external references: {e!r}") from None
    except ET.ParseError as e:
        line, col = e.position
        raise ValueError(f"{name}: malformed XML at line {line}, column {col}: {e}") from None
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.rsplit("}", 1)[1]
    return root


def _inline(el: ET.Element, deferred: list) -> str:
    """Text of `el` with skipped children removed, citations replaced by CITE, nested blocks deferred."""
    parts = [el.text or ""]
    for child in el:
        if child.tag == "xref" and child.get("ref-type") == "bibr":
            parts.append(CITE)
        elif child.tag in BLOCK_IN_P:
            deferred.append(child)
        elif child.tag not in SKIP:
            parts.append(_inline(child, deferred))
        parts.append(child.tail or "")
    return "".join(parts)


def strip_numeric_citations(text: str) -> str:
    """Drop bracketed numeric citations typed as text ("[28]", "[5-8]", "[1, 2]") and empty brackets;
    intervals with decimals ("[0.01, 0.25]") stay."""
    return NUMERIC_CITATION.sub("", text)


def _clean(text: str) -> str:
    text = strip_numeric_citations(CITE_RUN.sub("", text).replace(CITE, ""))
    return " ".join(text.split())


def _blocks(el: ET.Element, out: list[str]) -> None:
    """Paragraph-level walk: <p>/<title> and any element with text of its own are one line each."""
    mixed = (el.text or "").strip() or any((c.tail or "").strip() for c in el)
    if el.tag in ("p", "title", "article-title") or mixed:
        deferred: list = []
        line = _clean(_inline(el, deferred))
        if line:
            out.append(line)
        for block in deferred:
            _blocks(block, out)
        return
    for child in el:
        if child.tag not in SKIP:
            _blocks(child, out)


def parse_article(xml: bytes, name: str = "<bytes>") -> ET.Element:
    """The <article> element of a JATS document (its ``article-type`` attribute tells a research article from a
    correction or retraction notice)."""
    root = parse_jats(xml, name)
    article = root if root.tag == "article" else root.find(".//article")
    if article is None:
        raise ValueError(f"{name}: no <article> element: not a JATS article")
    return article


def jats_to_text(xml: bytes, name: str = "<bytes>") -> str:
    """Title, abstracts and body of a JATS article as text, one paragraph per line (see module docstring)."""
    return article_text(parse_article(xml, name))


def article_text(article: ET.Element) -> str:
    """`jats_to_text` of an already parsed <article> element."""
    out: list[str] = []
    for part in ("front/article-meta/title-group/article-title", "front/article-meta/abstract", "body"):
        for el in article.findall(part):
            _blocks(el, out)
    return "\n".join(out)
