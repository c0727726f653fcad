"""Which coins a tweet talks about: from cashtags, hashtags and coin names, case-insensitive and
word-boundary aware ("ether" matches "ETHER" and "#ether" but not "together" or "etherscan").

Tickers and names are configured apart on purpose: a ticker such as ``SOL`` or ``ADA`` is a
common word or name in other languages, so tickers match only with a sigil (``$SOL``,
``#SOL``), while names (``solana``) also match as plain words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CoinAliases:
    """``tickers`` match only as ``$TICKER``/``#TICKER``; ``names`` also match as plain words."""

    tickers: tuple[str, ...]
    names: tuple[str, ...] = ()


DEFAULT_COINS: dict[str, CoinAliases] = {
    "BTC": CoinAliases(("btc", "xbt"), ("bitcoin", "bitcoins")),
    "ETH": CoinAliases(("eth",), ("ethereum", "ether")),
    "SOL": CoinAliases(("sol",), ("solana",)),
    "BNB": CoinAliases(("bnb",), ("binance coin",)),
    "XRP": CoinAliases(("xrp",), ("ripple",)),
    "DOGE": CoinAliases(("doge",), ("dogecoin",)),
    "ADA": CoinAliases(("ada",), ("cardano",)),
}


class CoinTagger:
    """``tag(text, entities) -> sorted coin codes``; one compiled regex for all aliases."""

    def __init__(self, coins: Mapping[str, CoinAliases] | None = None) -> None:
        self.coins = dict(DEFAULT_COINS if coins is None else coins)
        self._by_alias: dict[str, str] = {}
        sigil_only: list[str] = []
        plain: list[str] = []
        for coin, aliases in self.coins.items():
            for alias, bucket in [(a, sigil_only) for a in aliases.tickers] + [
                (n, plain) for n in aliases.names
            ]:
                key = _norm(alias)
                if not key:
                    raise ValueError(f"empty alias for coin {coin!r}")
                other = self._by_alias.setdefault(key, coin)
                if other != coin:
                    raise ValueError(f"alias {alias!r} is configured for both {other} and {coin}")
                bucket.append(key)
        parts = []
        if sigil_only:
            parts.append(r"[$#](?P<ticker>" + _alternation(sigil_only) + ")")
        if plain:
            # A plain name may carry a sigil too; "binance coin" also matches "binance  Coin".
            parts.append(r"[$#]?(?P<name>" + _alternation(plain) + ")")
        body = "|".join(parts) or r"(?!x)x"
        self._regex = re.compile(r"(?<![\w$#])(?:" + body + r")(?!\w)", re.IGNORECASE)

    def tag(self, text: str, entities: Mapping[str, Any] | None = None) -> list[str]:
        """Coins mentioned in ``text`` or in the API's cashtag/hashtag ``entities``."""
        found: set[str] = set()
        for match in self._regex.finditer(text):
            alias = match.group("ticker") if "ticker" in self._regex.groupindex else None
            if alias is None:
                alias = match.group("name")
            coin = self._by_alias.get(_norm(alias))
            if coin is not None:
                found.add(coin)
        if entities:
            for kind in ("cashtags", "hashtags"):
                for entity in entities.get(kind) or ():
                    tag = entity.get("tag") if isinstance(entity, Mapping) else None
                    if isinstance(tag, str):
                        coin = self._by_alias.get(_norm(tag))
                        if coin is not None:
                            found.add(coin)
        return sorted(found)


def _norm(alias: str) -> str:
    return " ".join(alias.lower().split())


def _alternation(aliases: Iterable[str]) -> str:
    # Longest first so "bitcoins" wins over "bitcoin"; spaces match any whitespace run.
    ordered = sorted(set(aliases), key=len, reverse=True)
    return "|".join(r"\s+".join(re.escape(w) for w in alias.split()) for alias in ordered)
