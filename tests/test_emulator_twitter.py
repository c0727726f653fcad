"""The Twitter API emulator answers with the real v2 shapes, headers and error bodies."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import requests

from emulators.twitter import TwitterEmulator

TOKEN = "emu-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_search_shape_fields_and_meta() -> None:
    with TwitterEmulator(bearer_token=TOKEN) as emu:
        items = emu.add_tweets(15)
        r = requests.get(emu.url + "/2/tweets/search/recent", headers=AUTH, timeout=10, params={
            "query": "bitcoin", "max_results": 10, "tweet.fields": "created_at,lang",
            "expansions": "author_id", "user.fields": "verified"})
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"data", "includes", "meta"}
        assert set(body["data"][0]) == {"id", "text", "edit_history_tweet_ids", "created_at",
                                        "lang"}
        ids = [t["id"] for t in body["data"]]
        assert ids == sorted(ids, key=int, reverse=True)  # newest first
        assert body["meta"]["newest_id"] == items[-1].tweet["id"] == ids[0]
        assert body["meta"]["result_count"] == 10 and "next_token" in body["meta"]
        assert {"x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"} <= set(
            k.lower() for k in r.headers)
        r2 = requests.get(emu.url + "/2/tweets/search/recent", headers=AUTH, timeout=10, params={
            "query": "x", "since_id": ids[0]})
        assert r2.json() == {"meta": {"result_count": 0}}


def test_errors_have_the_api_problem_shape() -> None:
    with TwitterEmulator(bearer_token=TOKEN, search_limit=1, window_s=60) as emu:
        bad = requests.get(emu.url + "/2/tweets/search/recent",
                           headers={"Authorization": "Bearer nope"}, params={"query": "x"},
                           timeout=10)
        assert bad.status_code == 401
        assert bad.json() == {"title": "Unauthorized", "detail": "Unauthorized",
                              "type": "about:blank", "status": 401}
        missing = requests.get(emu.url + "/2/tweets/search/recent", headers=AUTH, timeout=10)
        assert missing.status_code == 400 and missing.json()["title"] == "Invalid Request"
        limited = requests.get(emu.url + "/2/tweets/search/recent", headers=AUTH,
                               params={"query": "x"}, timeout=10)
        assert limited.status_code == 429
        assert limited.headers["x-rate-limit-remaining"] == "0"
        assert int(limited.headers["x-rate-limit-reset"]) > time.time()


def test_faults_are_consumed_in_order() -> None:
    with TwitterEmulator(bearer_token=TOKEN) as emu:
        emu.add_tweets(12)
        emu.inject("malformed_json")
        emu.inject("status_503")
        url, params = emu.url + "/2/tweets/search/recent", {"query": "x"}
        first = requests.get(url, headers=AUTH, params=params, timeout=10)
        second = requests.get(url, headers=AUTH, params=params, timeout=10)
        third = requests.get(url, headers=AUTH, params=params, timeout=10)
        assert first.status_code == 200
        try:
            orjson.loads(first.content)
            raise AssertionError("expected malformed JSON")
        except orjson.JSONDecodeError:
            pass
        assert second.status_code == 503
        assert third.status_code == 200 and third.json()["meta"]["result_count"] == 10


def test_rules_and_stream_keepalive_lines() -> None:
    with TwitterEmulator(bearer_token=TOKEN, keepalive_s=0.1) as emu:
        url = emu.url + "/2/tweets/search/stream"
        assert requests.get(url + "/rules", headers=AUTH, timeout=10).json()["meta"][
            "result_count"] == 0
        added = requests.post(url + "/rules", headers=AUTH, json={"add": [{"value": "btc",
                                                                            "tag": "t"}]},
                              timeout=10)
        assert added.status_code == 201 and added.json()["meta"]["summary"]["created"] == 1
        rule_id = added.json()["data"][0]["id"]
        with requests.get(url, headers=AUTH, stream=True, timeout=10,
                          params={"tweet.fields": "created_at"}) as resp:
            lines = resp.iter_lines()
            assert next(lines) == b""  # keep-alive
            emu.add_tweets(2)
            got = [line for line in (next(lines) for _ in range(6)) if line][:2]
        tweet = orjson.loads(got[0])
        assert set(tweet) == {"data", "matching_rules"}
        assert tweet["matching_rules"] == [{"id": rule_id, "tag": "t"}]
        deleted = requests.post(url + "/rules", headers=AUTH, timeout=10,
                                json={"delete": {"ids": [rule_id]}})
        assert deleted.json()["meta"]["summary"] == {"deleted": 1, "not_deleted": 0}


def test_cli_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.twitter", "--port", "0", "--token", TOKEN,
         "--preload", "12", "--rate", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = orjson.loads(proc.stdout.readline())
        r = requests.get(info["url"] + "/2/tweets/search/recent", headers=AUTH,
                         params={"query": "x"}, timeout=10)
        assert r.json()["meta"]["result_count"] == 10
    finally:
        proc.terminate()
        proc.wait(timeout=10)
