"""Tweet preprocessing: entity handling, stop words that keep negations, stemming; coin tags."""

from __future__ import annotations

import pytest
from stop_words import get_stop_words

from processors.coins import CoinAliases, CoinTagger
from processors.text import KEEP_WORDS, TextOptions, TweetPreprocessor, default_stop_words

TWEET = "@whale $BTC pumping HARD!!! not selling, price up 5% 🚀 #Bitcoin https://t.co/abc $1,000"


def test_default_keeps_entities_as_tokens_and_negations() -> None:
    tokens = TweetPreprocessor()(TWEET)
    assert tokens == [
        "<user>", "$btc", "pumping", "hard", "not", "selling", "price", "up", "5", "🚀",
        "#bitcoin", "<url>", "1,000",
    ]  # fmt: skip


def test_strip_and_word_modes_and_stemming() -> None:
    options = TextOptions(
        urls="strip", mentions="strip", hashtags="word", cashtags="word", stemmer="porter"
    )
    assert TweetPreprocessor(options)(TWEET) == [
        "btc", "pump", "hard", "not", "sell", "price", "up", "5", "🚀", "bitcoin", "1,000",
    ]  # fmt: skip
    snowball = TweetPreprocessor(TextOptions(stemmer="snowball", cashtags="strip"))
    assert snowball("$ETH rallying strongly") == ["ralli", "strong"]


def test_case_and_stop_words_configurable() -> None:
    raw = TweetPreprocessor(TextOptions(lowercase=False, remove_stop_words=False))
    assert raw("The $ETH price is DOWN") == ["The", "$ETH", "price", "is", "DOWN"]


def test_stop_list_keeps_negations_direction_and_rated_words() -> None:
    stop = default_stop_words()
    package = {w.lower() for w in get_stop_words("en")}
    assert {"the", "is", "and", "of"} <= stop
    for word in ("not", "no", "nor", "never", "very", "up", "down", "against", "but", "don't",
                 "isn't", "good", "great"):
        assert word in package, word  # the package lists it ...
        assert word not in stop, word  # ... and we keep it
    assert KEEP_WORDS.isdisjoint(stop)


def test_cashtag_is_not_a_price_and_elongation_is_reduced() -> None:
    tokens = TweetPreprocessor()("$5 for $doge? soooooo cheap")
    assert tokens == ["5", "$doge", "sooo", "cheap"]


def test_bad_stemmer_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown stemmer"):
        TweetPreprocessor(TextOptions(stemmer="lancaster"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "coins"),
    [
        ("$BTC and $eth up", ["BTC", "ETH"]),
        ("#Bitcoin to 100k", ["BTC"]),
        ("ETHER looks strong", ["ETH"]),
        ("bitcoins everywhere", ["BTC"]),
        ("we are together on etherscan", []),  # word boundaries
        ("sol y sombra, ada lovelace", []),  # tickers need a sigil
        ("#SOL and solana", ["SOL"]),
        ("$BTCUSDT perp", []),
        ("Binance   Coin is BNB", ["BNB"]),
        ("$1,000 profit", []),
    ],
)
def test_coin_tagging(text: str, coins: list[str]) -> None:
    assert CoinTagger().tag(text) == coins


def test_coin_tagging_uses_entities_and_custom_mapping() -> None:
    tagger = CoinTagger({"PEPE": CoinAliases(("pepe",), ("pepecoin",))})
    assert tagger.tag("frog season", {"cashtags": [{"start": 0, "end": 5, "tag": "PEPE"}]}) == [
        "PEPE"
    ]
    assert tagger.tag("PepeCoin!") == ["PEPE"]
    assert tagger.tag("$BTC") == []
    with pytest.raises(ValueError, match="both"):
        CoinTagger({"A": CoinAliases(("x",)), "B": CoinAliases(("X",))})
