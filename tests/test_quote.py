"""The quote an answer rests on: the supporting sentence, its page label and section, and clean answers."""
from longmem_core.documents import layout
from longmem_core.answer import quote
from longmem_core.answer.sentences import Sentence


TEXT = ("Contents\n7.10 How do I convert factors to numeric? . . . 38\n\n"
        "7.10 How do I convert factors to numeric?\n"
        "It may happen that you read a file with numbers as a factor. "
        "To get the numbers back, use as.numeric(as.character(f)) where f is the factor.\n\n"
        "7.11 Why are my plots empty?\nPlots are empty when the device is closed.")


def sentence(text: str, score: float = 1.0) -> Sentence:
    start = TEXT.index(text)
    return Sentence(0, start, start + len(text), text, score)


def test_a_quote_names_its_page_label_and_section():
    source = {"name": "faq.pdf", "text": TEXT, "pages": [0, TEXT.index("7.10 How do I convert factors to numeric?\n")],
              "page_labels": ["ii", "38"]}
    s = sentence("To get the numbers back, use as.numeric(as.character(f)) where f is the factor.")
    q = quote.quote_of(s, source)
    assert q.text == s.text and q.page == 2 and q.page_label == "38"
    assert q.section == "7.10 How do I convert factors to numeric?"  # the heading, not the contents line
    assert q.citation() == "faq.pdf, page 38, under \u201c7.10 How do I convert factors to numeric?\u201d"
    assert q.to_dict()["citation"] == q.citation() and q.to_dict()["page_label"] == "38"


def test_an_answer_ends_a_sentence_or_stops_mid_sentence():
    assert quote.ends_sentence("Use as.numeric(as.character(f)).") and quote.ends_sentence('He said "yes." ')
    assert not quote.ends_sentence("Here's a summary of what CRAN is:")


def test_layout_finds_contents_lines_headings_and_running_headers():
    assert layout.is_toc_line("2.10 What is CRAN? . . . . . . . 8")
    assert layout.is_heading("2.3 Social dynamics of Debian") and not layout.is_heading("It is a sentence.")
    pages = ["GUIDE 2.1 PAGE 1\nBody one.", "GUIDE 2.1 PAGE 2\nBody two.", "GUIDE 2.1 PAGE 3\nBody three.",
             "GUIDE 2.1 PAGE 4\nBody four."]
    text = "\n\n".join(pages)
    starts = [0]
    for p in pages[:-1]:
        starts.append(starts[-1] + len(p) + 2)
    spans = layout.furniture(text, starts)
    assert [text[s:e] for s, e in spans] == [f"GUIDE 2.1 PAGE {i}" for i in range(1, 5)]
    numbered_list = "1 Step one takes 5\n2 Step two takes 6\nThen stop."  # two lines: a list, not contents
    assert layout.contents_lines(numbered_list) == []


def test_running_heads_that_name_their_section_are_furniture():
    heads = ["CHAPTER 3. TOOL SETUPS 3.4. GPG", "CHAPTER 3. TOOL SETUPS 3.5. DEVSCRIPTS",
             "CHAPTER 3. TOOL SETUPS 3.6. PBUILDER", "CHAPTER 4. EXAMPLE 4.1. BIG PICTURE"]
    bodies = ["Keys are made with gpg.", "Sign with debsign.", "Build in a chroot.", "Start from a tarball."]
    pages = [f"{h}\n{b}" for h, b in zip(heads, bodies)]
    text = "\n\n".join(pages)
    starts = [0]
    for p in pages[:-1]:
        starts.append(starts[-1] + len(p) + 2)
    found = [text[s:e] for s, e in layout.furniture(text, starts)]
    assert found == heads[:3]  # each names its own section, their first words repeat; the fourth's do not


def test_a_heading_that_opens_the_quoted_sentence_is_its_section():
    text = "3.4 quilt\nUse quilt.\n\n3.5 devscripts\nThe debsign command signs the package."
    s = Sentence(0, text.index("3.5 devscripts"), len(text), text[text.index("3.5 devscripts"):], 1.0)
    assert quote.quote_of(s, {"name": "guide.pdf", "text": text}).section == "3.5 devscripts"


def test_a_wrapped_line_of_prose_opening_with_a_number_is_no_heading():
    assert layout.is_heading("1 Introduction") and layout.is_heading("3.5 devscripts")
    assert not layout.is_heading("1993 were limited to just that. Since they normally added new commands")
    assert not layout.is_heading("12 apples were eaten")


def test_an_appendix_lettered_without_a_dot_is_a_heading_but_a_line_of_prose_is_not():
    assert layout.is_heading("F Revision History") and layout.is_heading("A Default Crossref Setup")
    assert layout.is_heading("Appendix G Comments") and layout.is_heading("B Notes on the Code")
    assert not layout.is_heading("A Londoner who had seen the river")  # a wrapped line of prose
    assert not layout.is_heading("I Went Home")  # the pronoun, never an appendix's letter
    assert not layout.is_heading("F Revision History 347")  # a contents line
    assert not layout.is_heading("R Schlicht") and layout.is_heading("Appendix C Glossary")  # an author's name


def test_a_heading_opening_the_quoted_sentence_is_not_quoted_as_prose():
    text = "Intro text.\n2.1 Author\nZsh was originally written by Paul Falstad."
    start = text.index("2.1 Author")
    s = Sentence(0, start, len(text), text[start:], 1.0)
    q = quote.quote_of(s, {"name": "zsh.pdf", "text": text})
    assert q.text == "Zsh was originally written by Paul Falstad." and q.section == "2.1 Author"
    assert text[q.char_start:q.char_end] == q.text


def test_a_contents_entry_wrapped_onto_two_lines_is_contents_and_no_section():
    text = ("6 Troubleshooting 55\n7 Bugs and workarounds 56\n7.1 Listings inside arguments . . 56\n7.2 Listings with a background\ncolour and formulas . . . . 56\n"
            "8 How tos 57\n\nPreface\nThe TeX world lost contact with Carsten Heinz in late 2004.")
    lines = [text[s:e] for s, e in layout.contents_lines(text)]
    assert "7.2 Listings with a background" in lines and "Preface" not in lines
    at = text.index("The TeX world")
    assert layout.heading_before(text, at, layout.furniture(text, None)) == "Preface"
    s = Sentence(0, text.index("Preface"), len(text), text[text.index("Preface"):], 1.0)
    q = quote.quote_of(s, {"name": "listings.pdf", "text": text})
    assert q.text == "The TeX world lost contact with Carsten Heinz in late 2004." and q.section == "Preface"


def test_an_unnumbered_heading_is_only_one_on_a_line_of_its_own():
    assert layout.is_heading("Preface") and layout.is_heading("Introduction") and layout.is_heading("INDEX")
    assert not layout.is_heading("Introduction to the package.") and not layout.is_heading("Prefaces abound")


def test_a_numbered_list_item_opening_with_a_capital_is_no_heading():
    assert layout.is_heading("2. Configuring desired options") and layout.is_heading("1. Introduction")
    assert not layout.is_heading("3. We very strongly discourage vendors from editing the paper description file")
    assert not layout.is_heading("5. If you are using CUPS, search /var/log/cups/error_log (which may be located")
    assert not layout.is_heading("i. In some cases, we have not determined the necessary commands")
    assert not layout.is_heading("3. Gutenprint is built dynamically only (--disable-static or")
    assert layout.is_heading("A.1 Default settings") and layout.is_heading("3.1.8 Ligatures")
