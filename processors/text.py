"""Tweet text -> tokens for analysis (word counts, topic features), using only nltk pieces that
work offline: ``TweetTokenizer`` and the Porter/Snowball stemmers. ``word_tokenize``, nltk's
stopword corpus and WordNet need data downloads that are impossible here.

Stop words come from the ``stop-words`` package (1,333 English entries), minus the negations
and direction words it contains: "not bullish", "price down", "never selling" mean the opposite
of "bullish", "price", "selling", so removing them would change what the tokens say. Its list
also holds ~90 words VADER's lexicon rates ("good", "great", "best", "sorry", "problem"); those
carry sentiment and are kept too.

These tokens are NOT what VADER scores: VADER reads the raw text (case, punctuation, emoji);
see ``processors.sentiment``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

import vaderSentiment
from nltk.stem import PorterStemmer, SnowballStemmer
from nltk.tokenize import TweetTokenizer
from stop_words import get_stop_words

EntityMode = Literal["keep", "word", "token", "strip"]
StemmerName = Literal["porter", "snowball"]

URL_TOKEN = "<url>"
MENTION_TOKEN = "<user>"

#: Stop-list words kept because they carry polarity or direction in market talk.
KEEP_WORDS: frozenset[str] = frozenset(
    {
        "not", "no", "nor", "never", "none", "nobody", "nothing", "neither", "cannot", "without",
        "very", "too", "most", "more", "less", "few", "only", "but", "against",
        "up", "down", "above", "below", "over", "under", "off", "out",
        "high", "higher", "highest", "low", "lower", "lowest", "top", "bottom", "least",
    }
)  # fmt: skip

_URL_RE = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
#: ``$BTC``, ``$eth``: a dollar sign and a letter, not part of a longer word; ``$1,000`` is a
#: price, not a cashtag.
CASHTAG_RE = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9_]{0,14})(?!\w)")
_SPECIAL_RE = re.compile(f"(?P<url>{_URL_RE.pattern})|(?P<cash>{CASHTAG_RE.pattern})", re.I)
_WORDLIKE_RE = re.compile(r"\w", re.UNICODE)


def vader_rated_words() -> frozenset[str]:
    """Alphabetic words (3+ letters) that VADER's lexicon gives a valence."""
    path = os.path.join(os.path.dirname(vaderSentiment.__file__), "vader_lexicon.txt")
    with open(path, encoding="utf-8") as fh:
        words = (line.split("\t", 1)[0] for line in fh)
        return frozenset(w for w in words if len(w) >= 3 and w.isalpha())


@cache
def default_stop_words() -> frozenset[str]:
    """``stop-words`` English minus ``KEEP_WORDS``, negated contractions (n't) and words VADER
    rates."""
    rated = vader_rated_words()
    words = {w.lower() for w in get_stop_words("en")}
    return frozenset(w for w in words if w not in KEEP_WORDS and "n't" not in w and w not in rated)


@dataclass(frozen=True, slots=True)
class TextOptions:
    """How each kind of tweet token is handled.

    ``urls``/``mentions``: ``token`` replaces them with ``<url>``/``<user>`` (keeps the fact
    that a link or a reply was there), ``strip`` drops them, ``keep`` keeps them verbatim.
    ``hashtags``/``cashtags``: ``keep`` keeps ``#bitcoin``/``$btc`` as one token (so a cashtag
    stays distinguishable from the word), ``word`` drops the sigil, ``strip`` drops the token.
    """

    lowercase: bool = True
    urls: EntityMode = "token"
    mentions: EntityMode = "token"
    hashtags: EntityMode = "keep"
    cashtags: EntityMode = "keep"
    remove_stop_words: bool = True
    stop_words: frozenset[str] = field(default_factory=default_stop_words)
    drop_punctuation: bool = True
    stemmer: StemmerName | None = None


class TweetPreprocessor:
    """Callable: ``preprocess(text) -> list[str]``; one instance per processor (it caches)."""

    def __init__(self, options: TextOptions | None = None) -> None:
        self.options = options or TextOptions()
        # reduce_len: "sooooo" -> "sooo", so elongations do not explode the vocabulary.
        self._tokenizer = TweetTokenizer(preserve_case=True, reduce_len=True)
        stemmer = self.options.stemmer
        if stemmer == "porter":
            self._stem = PorterStemmer().stem
        elif stemmer == "snowball":
            self._stem = SnowballStemmer("english").stem
        elif stemmer is None:
            self._stem = None
        else:
            raise ValueError(f"unknown stemmer {stemmer!r}; use 'porter', 'snowball' or None")
        self._stem_cache: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        pos = 0
        for match in _SPECIAL_RE.finditer(text):
            self._words(text[pos : match.start()], out)
            if match.group("url"):
                self._entity(match.group(0), self.options.urls, URL_TOKEN, out)
            else:
                self._sigil(match.group(0), self.options.cashtags, out)
            pos = match.end()
        self._words(text[pos:], out)
        return out

    def _words(self, segment: str, out: list[str]) -> None:
        if not segment or segment.isspace():
            return
        opts = self.options
        for token in self._tokenizer.tokenize(segment):
            if token.startswith("@") and len(token) > 1:
                self._entity(token, opts.mentions, MENTION_TOKEN, out)
            elif token.startswith("#") and len(token) > 1:
                self._sigil(token, opts.hashtags, out)
            elif _URL_RE.match(token):
                self._entity(token, opts.urls, URL_TOKEN, out)
            else:
                word = token.lower() if opts.lowercase else token
                if opts.drop_punctuation and not _WORDLIKE_RE.search(word) and not _is_emoji(word):
                    continue
                if opts.remove_stop_words and word.lower() in opts.stop_words:
                    continue
                out.append(self._stemmed(word))

    def _entity(self, token: str, mode: EntityMode, placeholder: str, out: list[str]) -> None:
        if mode == "token":
            out.append(placeholder)
        elif mode in ("keep", "word"):
            out.append(token.lower() if self.options.lowercase else token)

    def _sigil(self, token: str, mode: EntityMode, out: list[str]) -> None:
        if self.options.lowercase:
            token = token.lower()
        if mode in ("keep", "token"):
            out.append(token)
        elif mode == "word":
            out.append(self._stemmed(token[1:]))

    def _stemmed(self, word: str) -> str:
        if self._stem is None:
            return word
        stemmed = self._stem_cache.get(word)
        if stemmed is None:
            if len(self._stem_cache) > 200_000:  # bound memory on an endless stream
                self._stem_cache.clear()
            stemmed = self._stem_cache[word] = self._stem(word)
        return stemmed


def _is_emoji(token: str) -> bool:
    """Emoji and other pictographs carry sentiment; keep them even when dropping punctuation."""
    return any(ord(ch) >= 0x2190 for ch in token)
