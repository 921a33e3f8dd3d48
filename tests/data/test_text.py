"""Formatting and the offline sentence splitter."""

import pytest

from bert_trainer.prep.text import book_document, documents, split_sentences, to_lines, wiki_documents


def test_split_basic_abbreviations_decimals_quotes():
    text = ('Dr. Smith paid $3.50 for version 2.1 of the app. He said "It works." Then he left! '
            'Did J. R. R. Tolkien live in the U.S. before 1900? No, e.g. he did not. The end')
    assert split_sentences(text) == [
        "Dr. Smith paid $3.50 for version 2.1 of the app.",
        'He said "It works."',
        "Then he left!",
        "Did J. R. R. Tolkien live in the U.S. before 1900?",
        "No, e.g. he did not.",
        "The end",
    ]


def test_split_lowercase_after_period_is_not_a_boundary():
    assert split_sentences("It costs approx. five dollars. Yes.") == ["It costs approx. five dollars.", "Yes."]
    assert split_sentences("   ") == []


def test_wiki_blocks_drop_title_and_empty_articles():
    text = ('<doc id="1" url="u" title="Alan Turing">\nAlan Turing\n\nAlan Turing was a mathematician. '
            'He was born in 1912.\nHe died in 1954.\n</doc>\n<doc id="2" url="u" title="Empty">\nEmpty\n</doc>\n'
            '<doc id="3" url="u" title="X">\nX\nOne sentence only.\n</doc>\n')
    assert wiki_documents(text) == [
        ["Alan Turing was a mathematician.", "He was born in 1912.", "He died in 1954."],
        ["One sentence only."],
    ]
    assert documents(text) == wiki_documents(text)


def test_book_is_one_document_and_lines_form():
    book = "Chapter one. It was\na dark night.\n\nThe rain fell. It fell hard.\n"
    docs = documents(book)
    assert docs == book_document(book) == [["Chapter one.", "It was a dark night.", "The rain fell.",
                                            "It fell hard."]]
    assert to_lines([["a.", "b."], ["c."]]) == "a.\nb.\n\nc.\n"


def test_a_doc_tag_inside_article_text_does_not_split_the_document() -> None:
    """Issue 17: "no <command> or <doc> given" in an article cut it in two; only a tag at a line's start counts."""
    from bert_trainer.prep.shards import scan_file  # noqa: PLC0415
    from bert_trainer.prep.text import wiki_documents  # noqa: PLC0415

    article = ('<doc id="1" url="u" title="Shell">\nShell\n\nThe shell says no <command> or <doc> given. '
               'It then exits. A </doc> here is text too.\n</doc>\n<doc id="2" url="v" title="Two">\nTwo\n\n'
               'Second article. It has two sentences.\n</doc>\n')
    docs = wiki_documents(article)
    assert len(docs) == 2
    assert docs[0] == ["The shell says no <command> or <doc> given.", "It then exits.", "A </doc> here is text too."]
    import tempfile  # noqa: PLC0415

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        fh.write(article)
    fmt, ranges = scan_file(fh.name)
    assert fmt == "wikipedia" and len(ranges) == 2


BERT_FORMAT = ("This is the first document. \nIt has three sentences.\nThe third one ends here!\n\n"
               "A second document starts after a blank line.\nIt is short.\n   \n"
               "The third document follows a line of spaces.\nIt has two lines, \"quoted.\"\nAnd three.\n")


def test_the_bert_text_format_is_detected_and_read_line_by_line(tmp_path) -> None:
    """Issue 17: Google's and NVIDIA's one-sentence-per-line text with blank lines between documents was read
    as one book; now it is detected, and each line is taken as one sentence, as create_pretraining_data.py does."""
    from bert_trainer.prep.shards import scan_file  # noqa: PLC0415
    from bert_trainer.prep.text import detect_format, documents  # noqa: PLC0415

    assert detect_format(BERT_FORMAT) == "bert"
    path = tmp_path / "formatted.txt"
    path.write_text(BERT_FORMAT + "\n\n\n" + "Last document. One line only.\nBut a second.\nAnd a third.\n")
    fmt, ranges = scan_file(str(path))
    assert fmt == "bert" and len(ranges) == 4
    data = path.read_bytes()
    docs = [documents(data[s:e].decode(), fmt) for s, e in ranges]
    assert [len(d[0]) for d in docs] == [3, 2, 3, 3]
    assert docs[0][0][0] == "This is the first document."
    assert docs[3][0][0] == "Last document. One line only."  # a line is one sentence: not split again
    # forced to books, the same file is one document of split sentences
    fmt, ranges = scan_file(str(path), "books")
    assert fmt == "books" and ranges == [(0, len(data))]


@pytest.mark.parametrize("name,text", [
    ("a book wrapped at 60 columns", "It was a bright cold day in April, and the clocks were\nstriking thirteen. "
     "Winston Smith, his chin nuzzled into his\nbreast in an effort to escape the vile wind, slipped\n\n"
     "quickly through the glass doors of Victory Mansions, though\nnot quickly enough to prevent a swirl of "
     "gritty dust.\nThe hallway smelt of boiled cabbage and old rag mats.\n\nAt one end of it a coloured poster, "
     "too large for\nindoor display, had been tacked to the wall.\n"),
    ("a book of one paragraph per line", "Call me Ishmael. Some years ago I went to sea.\n\n"
     "It is a way I have of driving off the spleen.\n\nWhenever I find myself growing grim, I go. It is high "
     "time.\n\nThere now is your insular city.\n"),
    ("a book without blank lines", "One line. Another line.\nA third line here.\nAnd a fourth.\n"),
])
def test_books_are_not_taken_for_the_bert_format(name, text) -> None:
    from bert_trainer.prep.text import detect_format  # noqa: PLC0415

    assert detect_format(text) == "books", name


def test_wikipedia_is_detected_and_a_forced_format_that_does_not_fit_is_an_input_error(tmp_path) -> None:
    from bert_trainer.prep.shards import InputError, scan_file  # noqa: PLC0415

    path = tmp_path / "plain.txt"
    path.write_text(BERT_FORMAT)
    with pytest.raises(InputError, match="no <doc> block") as err:
        scan_file(str(path), "wikipedia")
    assert err.value.flag == "input_format"
    path.write_text('<doc id="1" url="u" title="T">\nT\n\nText here.\n</doc>\n')
    assert scan_file(str(path))[0] == "wikipedia"


def test_a_bert_file_whose_first_document_is_longer_than_the_sample_is_still_bert(tmp_path) -> None:
    """A formatted corpus that starts with a book (one document of thousands of lines) has no blank line in
    the bytes detection reads; it is bert all the same, and its later documents are separate."""
    from bert_trainer.prep.shards import scan_file  # noqa: PLC0415
    from bert_trainer.prep.text import DETECT_BYTES  # noqa: PLC0415

    book = "".join(f"Sentence number {i} of the book is here.\n" for i in range(3 * DETECT_BYTES // 40))
    path = tmp_path / "formatted.txt"
    path.write_text(book + "\n" + BERT_FORMAT)
    fmt, ranges = scan_file(str(path))
    assert fmt == "bert" and len(ranges) == 4
