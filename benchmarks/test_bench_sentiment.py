"""Tweets/s through preprocessing + VADER scoring (+ coin tagging), and each step alone.

Run: ``.venv/bin/pytest benchmarks/test_bench_sentiment.py -s``; figures in ``extra_info``.
The tweets are realistic crypto texts (emoji, cashtags, URLs, negations) of 20-140 chars.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from core.dead_letters import DeadLetters
from processors.sentiment import SentimentProcessor, TweetScorer

# The scored corpus is the one the correctness tests check against vaderSentiment.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_sentiment import CRYPTO_TWEETS, tweet_bytes

N_TWEETS = 2_000
T0 = 1_700_000_000_000


def texts(n: int) -> list[str]:
    rng = random.Random(3)
    pool = [t for t in CRYPTO_TWEETS if t]
    return [rng.choice(pool) for _ in range(n)]


def _report(benchmark, n: int) -> None:
    per_s = n / benchmark.stats.stats.median
    benchmark.extra_info["tweets_per_s"] = round(per_s)
    print(f"\n{benchmark.name}: {per_s:,.0f} tweets/s")


@pytest.mark.parametrize("engine", ["nltk", "vadersentiment"])
def test_preprocess_and_score(benchmark, engine: str) -> None:
    scorer = TweetScorer(engine=engine)  # type: ignore[arg-type]
    batch = texts(N_TWEETS)

    def run() -> float:
        total = 0.0
        for text in batch:
            total += scorer.polarity(text)["compound"]
            scorer.preprocess(text)
        return total

    benchmark.pedantic(run, rounds=3)
    _report(benchmark, N_TWEETS)


@pytest.mark.parametrize("step", ["preprocess", "vader", "tag"])
def test_single_step(benchmark, step: str) -> None:
    scorer = TweetScorer()
    fn = {"preprocess": scorer.preprocess, "vader": scorer.polarity, "tag": scorer.tagger.tag}[
        step
    ]
    batch = texts(N_TWEETS)
    benchmark.pedantic(lambda: [fn(t) for t in batch], rounds=3)
    _report(benchmark, N_TWEETS)


def test_full_processor_batch(benchmark) -> None:
    """Decode + preprocess + score + tag + window aggregates, as the service loop calls it."""
    payloads = [tweet_bytes(i + 1, T0 + i * 50, t) for i, t in enumerate(texts(N_TWEETS))]
    scorer = TweetScorer()

    def run(proc: SentimentProcessor) -> int:
        rows = 0
        for i in range(0, N_TWEETS, 200):
            rows += len(proc.process_batch(payloads[i : i + 200]).tweets)
        proc.flush()
        return rows

    rows = benchmark.pedantic(
        run, setup=lambda: ((SentimentProcessor(DeadLetters("b"), scorer=scorer),), {}), rounds=3
    )
    assert rows == N_TWEETS
    _report(benchmark, N_TWEETS)
