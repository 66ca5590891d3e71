"""Weaviate's tokenizations (word, lowercase, whitespace, field, trigram): how text becomes the terms BM25 indexes and searches."""

from __future__ import annotations

import re
from typing import Any

from searchd.config.spec import Tokenization

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def tokenize(text: str, tokenization: Tokenization) -> list[str]:
    if tokenization is Tokenization.WORD:
        return _WORD.findall(text.lower())
    if tokenization is Tokenization.LOWERCASE:
        return text.lower().split()
    if tokenization is Tokenization.WHITESPACE:
        return text.split()
    if tokenization is Tokenization.FIELD:
        stripped = text.strip()
        return [stripped] if stripped else []
    joined = _ALNUM.sub("", text.lower())  # trigram
    return [joined[i : i + 3] for i in range(len(joined) - 2)] if len(joined) >= 3 else ([joined] if joined else [])


def tokenize_value(value: Any, tokenization: Tokenization) -> list[str]:
    if isinstance(value, list):
        return [token for item in value if isinstance(item, str) for token in tokenize(item, tokenization)]
    return tokenize(value, tokenization) if isinstance(value, str) else []
