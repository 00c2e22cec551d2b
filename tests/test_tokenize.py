"""Tests for etagger.tokenize: token rules, sentence splitting, offsets, batching, wikitext."""

import time
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etagger.tokenize import Tokenizer, TokenSpans, detokenize_wikitext

WIKITEXT_VALID = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wikitext-2" / "valid.txt"
)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer()


@pytest.fixture(scope="module")
def wikitext_tokenizer():
    return Tokenizer(wikitext=True)


def is_separator(ch: str) -> bool:
    """The characters that must never appear in a token: whitespace and control characters."""
    return (
        ch.isspace() or unicodedata.category(ch) in ("Zs", "Zl", "Zp", "Cc") or ch in "\u200b\ufeff"
    )


def tokens_of(sentences: list[TokenSpans]) -> list[str]:
    return [token for sentence in sentences for token in sentence.tokens]


def texts_of(sentences: list[TokenSpans]) -> list[str]:
    return [" ".join(sentence.tokens) for sentence in sentences]


def check_invariants(
    text: str, sentences: list[TokenSpans], max_sentence_tokens: int = 512
) -> None:
    """Every token is a non-empty, separator-free slice of text at its offsets, offsets
    increase strictly, and no non-separator character of text is lost."""
    starts = [start for sentence in sentences for start in sentence.starts]
    ends = [end for sentence in sentences for end in sentence.ends]
    tokens = tokens_of(sentences)
    for sentence in sentences:
        assert (
            0
            < len(sentence.tokens)
            == len(sentence.starts)
            == len(sentence.ends)
            <= max_sentence_tokens
        )
    for token, start, end in zip(tokens, starts, ends):
        assert token and text[start:end] == token
        assert not any(is_separator(ch) for ch in token), token
    assert all(end <= next_start for end, next_start in zip(ends, starts[1:]))
    assert all(start < next_start for start, next_start in zip(starts, starts[1:]))
    assert "".join(tokens) == "".join(ch for ch in text if not is_separator(ch))


@pytest.mark.parametrize(
    "text, expected",
    [
        # punctuation is split off words
        ("Hello, world.", "Hello , world ."),
        ("Really?! Yes; no: maybe...", "Really ? ! Yes ; no : maybe ..."),
        # abbreviations, acronyms and initials keep their periods
        ("the U.S. and U.K. , e.g. this", "the U.S. and U.K. , e.g. this"),
        (
            "Mr. and Mrs. Smith met Dr. J. Doe, Ph.D. at St. Paul on Jan. 5 vs. Acme Inc.",
            "Mr. and Mrs. Smith met Dr. J. Doe , Ph.D. at St. Paul on Jan. 5 vs. Acme Inc.",
        ),
        ("J.R.R. Tolkien at 5 p.m. today", "J.R.R. Tolkien at 5 p.m. today"),
        # hyphenated words and numbers with , . : / - inside stay whole
        (
            "well-known 1996-08-22 3.5 1,000 10:30 1/2 $1,000.50 AT&T and/or 5-year-old",
            "well-known 1996-08-22 3.5 1,000 10:30 1/2 $ 1,000.50 AT&T and/or 5-year-old",
        ),
        ("In 1996, 3.5% rose -- then fell.", "In 1996 , 3.5 % rose -- then fell ."),
        # clitics
        (
            "John's dog don't bark, can't we? We're sure I'm right, they'd've",
            "John 's dog do n't bark , ca n't we ? We 're sure I 'm right , they'd 've",
        ),
        ("O'Neill's students' books", "O'Neill 's students ' books"),
        ("DON'T it\u2019s", "DO N'T it \u2019s"),
        # quotes and brackets
        (
            "\"Hi,\" she said (loudly) [sic] {x} 'quoted' \u201ccurly\u201d",
            "\" Hi , \" she said ( loudly ) [ sic ] { x } ' quoted ' \u201c curly \u201d",
        ),
        # URLs and e-mail addresses
        (
            "See http://example.com/a?b=c&d=1. Or www.example.org, or mail jo.doe+x@mail.example.com!",
            "See http://example.com/a?b=c&d=1 . Or www.example.org , or mail jo.doe+x@mail.example.com !",
        ),
        ("(https://en.wikipedia.org/wiki/Foo)", "( https://en.wikipedia.org/wiki/Foo )"),
        # <unk> is only one token in wikitext mode
        ("a <unk> b", "a < unk > b"),
    ],
)
def test_tokens(tokenizer, text, expected):
    sentences = tokenizer.tokenize_line(text)
    assert tokens_of(sentences) == expected.split(" ")
    check_invariants(text, sentences)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Hello world. This is it! Is it? Yes.",
            ["Hello world .", "This is it !", "Is it ?", "Yes ."],
        ),
        # the next token must start upper-case, with a digit or an opening quote/bracket
        (
            'It ended. 2 more. "Quoted." (Bracketed.) [x]',
            ["It ended .", "2 more .", '" Quoted . "', "( Bracketed . )", "[ x ]"],
        ),
        ("Yahoo! is a company. e.g. this. ok", ["Yahoo ! is a company . e.g. this . ok"]),
        # not after abbreviations or initials, nor inside U.S.
        ("Mr. Smith met Dr. Jones. J. Doe came.", ["Mr. Smith met Dr. Jones .", "J. Doe came ."]),
        ("The U.S. Army left. It rained.", ["The U.S. Army left .", "It rained ."]),
        # ... but the end of the line always ends a sentence
        ("He lives in the U.S.", ["He lives in the U.S."]),
        ("no terminator at all", ["no terminator at all"]),
        # closing quotes and brackets stay with the sentence they close
        ('He said "Go." Then he left.', ['He said " Go . "', "Then he left ."]),
        ('He left. "Hi," she said.', ["He left .", '" Hi , " she said .']),
        ('"Go. Now." He left.', ['" Go .', 'Now . "', "He left ."]),
        ("(See below.) Done!!! Really?!", ["( See below . )", "Done ! ! !", "Really ? !"]),
        ("She said \u201cno.\u201d Then", ["She said \u201c no . \u201d", "Then"]),
        # uncased scripts start sentences too
        ("Fin. \u6771\u4eac.", ["Fin .", "\u6771\u4eac ."]),
    ],
)
def test_sentences(tokenizer, text, expected):
    sentences = tokenizer.tokenize_line(text)
    assert texts_of(sentences) == expected
    check_invariants(text, sentences)


@pytest.mark.parametrize(
    "text", ["", " ", "   \t  ", "\n", "\x00\x01\x1f\x7f\x85", "\u00a0\u2028\u3000\u200b\ufeff"]
)
def test_blank_lines_have_no_sentences(tokenizer, text):
    assert tokenizer.tokenize_line(text) == []


def test_control_characters_separate_tokens(tokenizer):
    text = "a\x00b\x01c\x1fd\te\x7ff\x85g\rh\x0bi"
    sentences = tokenizer.tokenize_line(text)
    assert tokens_of(sentences) == list("abcdefghi")
    check_invariants(text, sentences)


def test_offsets_are_characters_not_bytes(tokenizer):
    text = (
        "Z\u00fcrich \u2013 \u6771\u4eac caf\u00e9's na\u00efve \U0001f600 done. \u00c9mile left."
    )
    sentences = tokenizer.tokenize_line(text)
    assert texts_of(sentences) == [
        "Z\u00fcrich \u2013 \u6771\u4eac caf\u00e9 's na\u00efve \U0001f600 done .",
        "\u00c9mile left .",
    ]
    assert sentences[1].starts == (text.index("\u00c9mile"), text.index("left"), len(text) - 1)
    check_invariants(text, sentences)


def test_no_character_of_the_basic_multilingual_plane_is_lost(tokenizer):
    text = "".join(chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF)
    check_invariants(text, tokenizer.tokenize_line(text))


def test_every_separator_separates(tokenizer):
    separators = [
        chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and is_separator(chr(c))
    ]
    text = "x" + "x".join(separators) + "x"
    assert tokens_of(tokenizer.tokenize_line(text)) == ["x"] * (len(separators) + 1)


def test_lone_surrogates_are_kept(tokenizer):
    text = "a\ud800b \udfffc."
    sentences = tokenizer.tokenize_line(text)
    assert tokens_of(sentences) == ["a", "\ud800", "b", "\udfff", "c", "."]
    check_invariants(text, sentences)


def test_long_sentences_are_cut_into_chunks():
    sentences = Tokenizer(max_sentence_tokens=3).tokenize_line("a b c d e f g. H i")
    assert texts_of(sentences) == ["a b c", "d e f", "g .", "H i"]


def test_max_sentence_tokens_must_be_positive():
    with pytest.raises(ValueError):
        Tokenizer(max_sentence_tokens=0)


@pytest.mark.parametrize("unit", ["word ", "a+", "x. ", "! ", "'", "1,a", "a.@"])
def test_very_long_lines_are_fast_and_lose_nothing(tokenizer, unit):
    text = unit * 12_000
    started = time.perf_counter()
    sentences = tokenizer.tokenize_line(text)
    assert time.perf_counter() - started < 5  # about 0.1 s; a quadratic blow-up takes minutes
    check_invariants(text, sentences)
    assert len(tokens_of(sentences)) >= 12_000


def test_ten_thousand_words_without_punctuation_become_several_sentences(tokenizer):
    sentences = tokenizer.tokenize_line("word " * 10_000)
    assert [len(s.tokens) for s in sentences] == [512] * 19 + [10_000 - 19 * 512]


def test_batch_equals_single_lines(tokenizer):
    lines = [
        "Hello, world. Bye!",
        "",
        "Z\u00fcrich \u6771\u4eac. Ok.",
        "   ",
        "don't U.S. 3,000",
        "a\x00b",
    ]
    assert tokenizer.tokenize_lines(lines) == [tokenizer.tokenize_line(line) for line in lines]
    assert tokenizer.tokenize_lines([]) == []


def test_detokenize_wikitext():
    line = " It is 3 @,@ 000 m ( 9 @.@ 8 ft ) , a well @-@ known <unk> . "
    assert detokenize_wikitext(line) == " It is 3,000 m ( 9.8 ft ) , a well-known <unk> . "


def test_wikitext_tokens_and_offsets(wikitext_tokenizer):
    line = " The 3 @,@ 000 @-@ strong <unk> army , 1 @.@ 5 km away . He don 't know John 's <unk> . <unk> left . "
    sentences = wikitext_tokenizer.tokenize_line(line)
    assert texts_of(sentences) == [
        "The 3,000-strong <unk> army , 1.5 km away .",
        "He don 't know John 's <unk> .",
        "<unk> left .",
    ]
    check_invariants(detokenize_wikitext(line), sentences)


@pytest.mark.parametrize(
    "line, expected",
    [
        (" = Robert Boulter = ", ["= Robert Boulter ="]),
        (" = = Career = = ", ["= = Career = ="]),
        (" ", []),
    ],
)
def test_wikitext_headings_are_sentences(wikitext_tokenizer, line, expected):
    assert texts_of(wikitext_tokenizer.tokenize_line(line)) == expected


def test_real_wikitext(wikitext_tokenizer):
    if not WIKITEXT_VALID.exists():
        pytest.skip(f"{WIKITEXT_VALID} is absent")
    lines = WIKITEXT_VALID.read_text(encoding="utf-8").split("\n")[:400]
    batch = wikitext_tokenizer.tokenize_lines(lines)
    assert batch[:50] == [wikitext_tokenizer.tokenize_line(line) for line in lines[:50]]
    tokens = []
    for line, sentences in zip(lines, batch):
        check_invariants(detokenize_wikitext(line), sentences)
        tokens += tokens_of(sentences)
    assert "<unk>" in tokens and "'s" in tokens and "U.S." in tokens
    assert not any("@" in token for token in tokens)
    # every sentence of prose ends with its terminator (or a closing quote/bracket)
    last = [s.tokens[-1] for sentences in batch for s in sentences if s.tokens[0] != "="]
    assert sum(token in {".", "!", "?", '"', ")"} for token in last) / len(last) > 0.95


# Any character, with separators and the characters the rules are about over-represented.
_ALPHABET = st.one_of(
    st.characters(),
    st.sampled_from(list(" \t\n\r\x00\x0b\x1f\x7f\x85\xa0\u2028\u3000\u200b\ufeff")),
    st.sampled_from(list(".,;:!?'\"\u2019\u201c()[]-/@&<>aAnt0")),
)
_TEXT = st.text(alphabet=_ALPHABET, max_size=60)
_MAX_TOKENS = 8


@pytest.fixture(scope="module")
def small_tokenizers():
    return {
        wikitext: Tokenizer(wikitext=wikitext, max_sentence_tokens=_MAX_TOKENS)
        for wikitext in (False, True)
    }


@settings(max_examples=150, deadline=None)
@given(text=_TEXT, wikitext=st.booleans())
def test_property_tokens_are_lossless_slices(small_tokenizers, text, wikitext):
    sentences = small_tokenizers[wikitext].tokenize_line(text)
    check_invariants(detokenize_wikitext(text) if wikitext else text, sentences, _MAX_TOKENS)


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(_TEXT, max_size=6))
def test_property_batch_equals_single_lines(small_tokenizers, lines):
    tokenizer = small_tokenizers[False]
    assert tokenizer.tokenize_lines(lines) == [tokenizer.tokenize_line(line) for line in lines]
