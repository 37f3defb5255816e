"""Text analysis shared by catalog search and demand matching: Chinese and English alike.

Chinese has no spaces between words, so it is segmented with jieba (search mode, which also
emits the shorter words inside long ones: 金融风控 → 金融, 风控, 金融风控). English words are
lower-cased and reduced to their Snowball stem (payments → payment). The output is a list of
terms; the search index stores them space-separated and tokenizes on whitespace, so queries
and documents are analysed by this one function.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

import jieba
import snowballstemmer

jieba.setLogLevel(logging.WARNING)

_STEMMER = snowballstemmer.stemmer("english")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common in listings to tell them apart (both languages).
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "with",
        "的",
        "了",
        "和",
        "与",
        "及",
        "或",
        "在",
        "是",
        "等",
        "对",
        "为",
        "从",
        "以",
        "中",
        "个",
        "该",
        "其",
        "将",
        "按",
    ]
)


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_STEMMER.stemWord(word))


def analyze(text: str) -> list[str]:
    """Terms of a text, in order, repeats kept (term frequency matters for ranking)."""
    if not text:
        return []
    text = unicodedata.normalize("NFKC", text).lower()
    terms: list[str] = []
    for piece in jieba.cut_for_search(text) if _CJK.search(text) else [text]:
        for word in _WORD.findall(piece):
            if word in STOPWORDS:
                continue
            terms.append(word if _CJK.search(word) else _stem(word))
    return terms


def analyzed(text: str) -> str:
    """``analyze`` joined by spaces: the form stored in and queried against the index."""
    return " ".join(analyze(text))


def warm_up() -> None:
    """Load jieba's dictionary now (about a second) rather than on the first request."""
    jieba.initialize()
