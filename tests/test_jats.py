"""JATS XML -> text (edad_core.jats): a real PLOS article of the mirror and a hand-written file with every element kind."""

import html
import html.entities
import random
import re
import string
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edad_core.corpus import normalize, split_sentences
from edad_core.jats import jats_to_text, strip_numeric_citations

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
PLOS = "raw.githubusercontent.com/PLOS/allofplos/07fdeed848b2816a7fbf7da6418ef6e2076e1960/allofplos/starter_corpus"


DROPPED = {"xref", "inline-formula", "disp-formula"}


def _char_ref(m: re.Match) -> bytes:
    """A DTD-defined named entity as a numeric character reference (XML's own five stay)."""
    name = m.group(1).decode()
    if name in ("amp", "lt", "gt", "quot", "apos"):
        return m.group(0)
    return "".join(f"&#{ord(c)};" for c in html.entities.html5.get(name + ";", "")).encode()


def _texts(root, tag):
    """Whitespace-normalised full text of every <tag> element, read independently of edad_core.jats."""
    return [" ".join("".join(el.itertext()).split()) for el in root.iter(tag)]


def test_real_plos_article(mirror):
    path = mirror / PLOS / "journal.pone.0114370.xml"
    data = path.read_bytes()
    text = jats_to_text(data, str(path))
    root = ET.fromstring(re.sub(rb"&([A-Za-z]+);", _char_ref, data))  # independent parse for the expectations
    lines = text.split("\n")

    title = _texts(root, "article-title")[0]
    assert lines[0] == title and len(title.split()) > 3
    assert len(text.split()) > 2000 and "\x00" not in text

    refs = [t for t in _texts(root, "ref") if len(t) > 40]
    assert len(refs) > 20
    for ref in refs:  # neither whole references nor their titles leak in
        assert ref not in text
    ref_titles = {" ".join("".join(t.itertext()).split()) for r in root.iter("ref") for t in r.iter("article-title")}
    assert not [t for t in ref_titles if len(t) > 30 and t in text]

    assert data.count(b'[<xref ref-type="bibr"') > 50  # the file does use bracketed numeric citations
    assert not re.search(r"\[\s*\d+(\s*[,\u2013-]\s*\d+)*\s*\]", text), "a citation marker survived"
    assert "[]" not in text and "[, ]" not in text and "()" not in text

    cells = {t for t in _texts(root, "td") + _texts(root, "th") if len(t) > 25}
    assert cells and not [c for c in cells if c in text], "table cell text leaked in"

    plain = [t for f in root.iter("fig") for t in f.iter("title") if not any(e.tag in DROPPED for e in t.iter())]
    assert len(plain) > 5
    for t in plain:  # figure captions are kept, each as its own line
        assert " ".join("".join(t.itertext()).split()) in lines


def test_every_element_kind():
    expected = [
        "Every JATS element kind",
        "Background",
        "Abstracts are kept.",
        "Author summary",
        "Summaries are kept too.",
        "Introduction",
        "Numbered citations go, and so do author-year ones.",
        "Superscripts vanish and figure links stay (Figure 1).",
        "A formula is dropped, and so is a display one.",
        "Entities: [Ca2+] at 37°C, ±5%, an unknown one.",
        "Text before a figure. Text after it.",
        "Nested caption title.",
        "Nested caption text.",
        "Lists and boxes",
        "First item.",
        "Second item.",
        "Box 1",
        "Boxed text is kept.",
        "Quoted text is kept.",
        "Caption title.",
        "Caption text.",
    ]
    assert jats_to_text((FIXTURES / "all_elements.xml").read_bytes()).split("\n") == expected


def test_default_namespace_and_no_doctype():
    xml = (
        b'<article xmlns="http://jats.nlm.nih.gov/ns/archiving/1.3/"><front><article-meta><title-group>'
        b"<article-title>Namespaced title</article-title></title-group></article-meta></front>"
        b"<body><p>One &ndash; two.</p></body></article>"
    )
    assert jats_to_text(xml) == "Namespaced title\nOne \u2013 two."


def test_malformed_xml_names_file_and_line():
    with pytest.raises(ValueError, match=r"bad\.xml: malformed XML at line 2, column \d+"):
        jats_to_text(b"<article><body>\n<p>open</body></article>", "bad.xml")


def test_entity_declarations_are_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    xml = f'<!DOCTYPE article [<!ENTITY x SYSTEM "file://{secret}">]><article><body><p>&x;</p></body></article>'
    with pytest.raises(ValueError, match=r"evil\.xml: refusing .*<!ENTITY"):
        jats_to_text(xml.encode(), "evil.xml")


def test_not_an_article():
    with pytest.raises(ValueError, match=r"x\.xml: no <article>"):
        jats_to_text(b"<html><body><p>hi</p></body></html>", "x.xml")


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("ruber [28]. Next", "ruber. Next"),
        ("mice [1,2] and humans [3, 4].", "mice and humans."),
        ("neurons [5-8], cells [3]\u2013[5].", "neurons, cells."),
        ("range [0.01, 0.25] and [3H]thymidine and [Ca2+]i", "range [0.01, 0.25] and [3H]thymidine and [Ca2+]i"),
        ("left () empty []", "left empty"),
    ],
)
def test_numeric_citations(raw, clean):
    assert strip_numeric_citations(raw) == clean


def test_entities_are_refused_in_any_encoding():
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE article [<!ENTITY x "SMUGGLED">]>' \
          "<article><body><p>Text &x;.</p></body></article>"
    with pytest.raises(ValueError, match=r"u16\.xml: refusing .*<!ENTITY"):
        jats_to_text(doc.encode("utf-16"), "u16.xml")
    laughs = '<!DOCTYPE article [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>' \
             "<article><body><p>&b;</p></body></article>"
    with pytest.raises(ValueError, match=r"laughs\.xml: refusing"):
        jats_to_text(laughs.encode(), "laughs.xml")
    plain = '<?xml version="1.0" encoding="UTF-16"?><article><body><p>Caf\u00e9 text.</p></body></article>'
    assert jats_to_text(plain.encode("utf-16"), "ok.xml") == "Caf\u00e9 text."


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_wide_encodings_keep_named_entities_and_line_numbers(codec):
    """UTF-16/32 (with or without BOM) reads as UTF-8 does: DTD entities become characters, errors keep their line."""
    doc = '<?xml version="1.0" encoding="{}"?>\n<article><body><p>Caf\u00e9 &ndash; &lsqb;Ca&rsqb;.</p></body></article>'
    expected = jats_to_text(doc.format("UTF-8").encode(), "u8.xml")
    assert expected == "Caf\u00e9 \u2013 [Ca]."
    assert jats_to_text(doc.format(codec.upper()).encode(codec), "wide.xml") == expected
    bad = doc.replace("</p>", "\n\n</body>")  # mismatched tag at line 4
    with pytest.raises(ValueError, match=r"bad\.xml: malformed XML at line 4, column 2"):
        jats_to_text(bad.format(codec.upper()).encode(codec), "bad.xml")


WHITESPACE_RUN = "".join(random.Random(0).choices(" \t\n\u00a0\u2009", k=1_000_000)) + "[1]"
PRINTABLE = "".join(random.Random(1).choices(string.printable.replace("\x0b", "").replace("\x0c", ""), k=1_000_000))


@pytest.mark.parametrize("text", [WHITESPACE_RUN, PRINTABLE], ids=["whitespace_run", "printable"])
def test_cleaning_is_linear(text):
    """Each cleaning step takes a 1 MB document in well under 2 s (a quadratic scan of a 1 MB whitespace run
    takes about an hour); \x0b and \x0c are left out because XML cannot hold them."""
    xml = f"<article><body><p>{html.escape(text)}</p></body></article>".encode()
    steps = {"strip_numeric_citations": lambda: strip_numeric_citations(text), "jats_to_text": lambda: jats_to_text(xml),
             "normalize + split_sentences": lambda: split_sentences(normalize(text))}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        assert time.perf_counter() - start < 2, name
