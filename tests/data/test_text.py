"""Formatting and the offline sentence splitter."""

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
    assert len(scan_file(fh.name)) == 2
