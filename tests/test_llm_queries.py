"""LLM query generation against a real local HTTP server (tests/llm_server.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import typer
from llm_server import FakeLLM, FakeServer
from typer.testing import CliRunner

from semid.cli.llm import generate as generate_command
from semid.data.dataset import Dataset
from semid.data.llm_queries import (
    ABORT_AFTER_FAILURES,
    AnswerError,
    CatalogueItem,
    LLMQueryGenerator,
    LLMSettings,
    QueryCache,
    backoff_delay,
    check_prompt,
    generate_query_file,
    parse_answer,
    read_prompt,
    render_prompt,
    retry_after_seconds,
    title_variants,
)
from semid.data.queries import load_query_file
from semid.errors import ConfigError

TITLES = ["The Dark Knight", "Amélie (Le Fabuleux destin d'Amélie Poulain)", "Up", "Heat"]
KEY = "sk-test-secret-123"


def make_items(titles: list[str]) -> pl.DataFrame:
    n = len(titles)
    return pl.DataFrame(
        {
            "item_idx": list(range(n)),
            "item_id": [100 + i for i in range(n)],
            "title": titles,
            "year": [2000 + i for i in range(n)],
            "genres": [["Drama", "Crime"]] * n,
            "tags": [["dark", "heist"]] * n,
        },
        schema_overrides={"item_idx": pl.Int32},
    )


def settings(server: FakeServer, **kw) -> LLMSettings:
    base = {"api_key": KEY, "timeout": 0.2, "backoff_base": 0.01, "backoff_max": 0.05,
            "concurrency": 4}  # fmt: skip
    return LLMSettings(server.base_url, "test-model", **{**base, **kw})


def answer(n: int = 2, **changes) -> str:
    obj = {"queries": [f"query {i}" for i in range(n)],
           "paraphrases": [f"other words {i}" for i in range(n)]}  # fmt: skip
    obj.update(changes)
    return json.dumps(obj)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- validation


def test_parse_answer_accepts_bare_fenced_and_wrapped_json():
    expected = (["query 0", "query 1"], ["other words 0", "other words 1"])
    assert parse_answer(answer(), 2, "Heat") == expected
    assert parse_answer(f"Sure!\n```json\n{answer()}\n```", 2, "Heat") == expected
    assert parse_answer(f"<think>{{draft}}</think> Here: {answer()} Done.", 2, "Heat") == expected
    spaced = answer(queries=["  query   0 ", "query 1"])
    assert parse_answer(spaced, 2, "Heat")[0] == ["query 0", "query 1"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"queries": ["a", ', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (answer(queries=["a"]), '"queries" must have exactly 2 entries, got 1'),
        (json.dumps({"queries": ["a", "b"]}), 'no "paraphrases" list'),
        (answer(queries=["a", 3]), '"queries" entry 2 must be a string'),
        (answer(queries=["a", "  "]), '"queries" entry 2 is empty'),
        (answer(paraphrases=["query 0", "x"]), "query 1 and paraphrase 1 are the same"),
        (answer(queries=["Query  1", "query 1"]), "query 1 and query 2 are the same"),
        (answer(queries=["a", "films like dark knight"]), "query 2 mentions the title"),
        (answer(paraphrases=["x", "THE DARK-KNIGHT sequel"]), "paraphrase 2 mentions the title"),
        ("", "the answer is empty"),
    ],
)
def test_parse_answer_rejects_with_a_message_for_the_model(content, message):
    with pytest.raises(AnswerError, match=message):
        parse_answer(content, 2, "The Dark Knight")


def test_title_variants_strip_articles_accents_and_skip_short_words():
    assert title_variants("The Dark Knight") == ["dark knight"]
    assert title_variants("Amélie (Le Fabuleux destin d'Amélie Poulain)") == [
        "amelie",
        "fabuleux destin d amelie poulain",
    ]
    assert title_variants("Up") == []  # an ordinary word: not enforced
    ok = answer(queries=["a heated chase", "up in the air"])  # whole words only
    assert parse_answer(ok, 2, "Heat")[0] == ["a heated chase", "up in the air"]
    assert parse_answer(ok, 2, "Up")[0][1] == "up in the air"
    with pytest.raises(AnswerError, match="mentions the title"):
        parse_answer(answer(queries=["a", "amelie in paris"]), 2, TITLES[1])


def test_prompt_template_checks_and_rendering(tmp_path):
    default = read_prompt()
    item = CatalogueItem(0, 7, "Heat", 1995, ("Crime",), (), None)
    text = render_prompt(default, item, 10)
    assert "Title: Heat" in text and "Year: 1995" in text and "Genres: Crime" in text
    assert "Tags: none" in text and "Description: none" in text and "$" not in text
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) \$plot"):
        check_prompt("Title: $title $plot")
    with pytest.raises(ConfigError, match="never uses \\$title"):
        check_prompt("Describe a movie")
    with pytest.raises(ConfigError, match="line 2: a lone"):
        check_prompt("Title: $title\ncosts $ 5")
    bad = tmp_path / "p.txt"
    bad.write_text("$nope")
    with pytest.raises(ConfigError, match=f"--prompt {bad}: unknown placeholder"):
        read_prompt(bad)


# ----------------------------------------------------------------------------- settings, back-off


def test_settings_resolve_precedence_and_env_fallbacks():
    env = {"SEMID_LLM_BASE_URL": "http://env/v1", "SEMID_LLM_MODEL": "env-model",
           "OPENAI_API_KEY": "openai-key"}  # fmt: skip
    s = LLMSettings.resolve(env=env)
    assert (s.base_url, s.model, s.api_key) == ("http://env/v1", "env-model", "openai-key")
    env["SEMID_LLM_API_KEY"] = "semid-key"
    s = LLMSettings.resolve(config={"model": "file-model", "concurrency": 3}, env=env,
                            model="cli-model", concurrency=None)  # fmt: skip
    assert (s.model, s.concurrency, s.api_key) == ("cli-model", 3, "semid-key")
    assert "semid-key" not in repr(s)
    with pytest.raises(ConfigError, match="no LLM model: pass --model"):
        LLMSettings.resolve(env={"SEMID_LLM_BASE_URL": "http://x/v1"})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) modle"):
        LLMSettings.resolve(config={"modle": "x"}, env=env)
    with pytest.raises(ConfigError, match="--concurrency 0: must be at least 1"):
        LLMSettings("http://x/v1", "m", concurrency=0)
    s = LLMSettings("https://user:pw@host:8443/v1beta/openai/?key=abc", "m")
    assert s.public_base_url == "https://host:8443/v1beta/openai/"
    assert LLMSettings("http://h/v1/", "m").chat_url == "http://h/v1/chat/completions"


def test_backoff_grows_caps_and_honours_retry_after():
    import random

    s = LLMSettings("http://x/v1", "m", backoff_base=1.0, backoff_max=8.0)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [backoff_delay(attempt, s, rng) for _ in range(50)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > 0  # jittered
    assert 30.0 <= backoff_delay(1, s, rng, retry_after=30.0) <= 33.0  # above backoff_max
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after_seconds({"retry-after": date}, now=1445412480.0) == 10.0
    assert retry_after_seconds({}) is None


# ----------------------------------------------------------------------------- against a server


def test_writes_project_query_file_meta_and_no_key(tmp_path):
    fake = FakeLLM(n=3, scripts={"Heat": ["fenced"]})
    items = make_items(TITLES)
    out = tmp_path / "q.jsonl"
    with FakeServer(fake) as server:
        summary = generate_query_file(items, out, settings(server), n_queries=3, progress=False)
    assert summary.ok and summary.generated == 4 and summary.queries == 24
    assert summary.requests == 4 and summary.prompt_tokens == 400
    lines = read_jsonl(out)
    assert [line["movieId"] for line in lines[:6]] == [100] * 6
    assert [line["group"] for line in lines[:6]] == ["original"] * 3 + ["paraphrase"] * 3
    assert all(line["split"] == ("train" if line["group"] == "original" else "test")
               for line in lines)  # fmt: skip
    request = fake.requests[0]
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.body["model"] == "test-model"
    assert request.body["response_format"] == {"type": "json_object"}
    meta = json.loads((tmp_path / "q.jsonl.meta.json").read_text())
    assert meta["model"] == "test-model" and meta["split"] == "paraphrase"
    assert meta["queries"]["by_split"] == {"train": 12, "test": 12}
    assert len(meta["prompt_sha256"]) == 64
    assert json.loads((tmp_path / "q.jsonl.failures.json").read_text())["failed"] == 0
    for path in tmp_path.iterdir():
        assert KEY not in path.read_text(), path
    loaded = load_query_file(out, Dataset(items, pl.DataFrame()))
    assert loaded.height == 24 and set(loaded["group"]) == {"original", "paraphrase"}


def test_retries_timeouts_429_and_5xx_then_gives_up(tmp_path):
    fake = FakeLLM(n=2, scripts={"Heat": ["429", "500", "timeout", "good"],
                                 "Up": ["500", "502", "503", "500", "good"]})  # fmt: skip
    with FakeServer(fake) as server:
        summary = generate_query_file(
            make_items(["Heat", "Up"]), tmp_path / "q.jsonl", settings(server, max_retries=3),
            n_queries=2, progress=False,
        )  # fmt: skip
    assert fake.titles().count("Heat") == 4 and fake.titles().count("Up") == 4
    assert summary.generated == 1 and summary.failed == 1 and summary.retries == 6
    (failure,) = summary.failures
    assert failure.item_id == 101 and "HTTP 500" in failure.error
    assert "gave up after 4 attempts" in failure.error
    assert {line["movieId"] for line in read_jsonl(tmp_path / "q.jsonl")} == {100}


def test_reasks_invalid_answers_with_the_error_then_reports_failure(tmp_path):
    fake = FakeLLM(n=2, scripts={"The Dark Knight": ["malformed", "title", "good"],
                                 "Heat": ["short", "title", "good"]})  # fmt: skip
    out = tmp_path / "q.jsonl"
    items = make_items(["The Dark Knight", "Heat"])
    with FakeServer(fake) as server:
        generator = LLMQueryGenerator(settings(server, max_reasks=2), n_queries=2, progress=False)
        assert generator.generate(items.head(1), per_item=4).height == 4
        summary = generate_query_file(
            items.tail(1), out, settings(server, max_reasks=1), n_queries=2, progress=False
        )
    knight = [r.body["messages"] for r in fake.requests if r.title == "The Dark Knight"]
    assert [len(m) for m in knight] == [1, 3, 5]
    assert knight[1][1]["role"] == "assistant"
    assert "not valid JSON" in knight[1][2]["content"]
    assert "mentions the title" in knight[2][4]["content"]
    assert summary.failed == 1 and summary.reasks == 1 and fake.titles().count("Heat") == 2
    failures = json.loads((tmp_path / "q.jsonl.failures.json").read_text())
    assert failures["items"][0]["item_id"] == 101
    assert "mentions the title" in failures["items"][0]["error"]
    assert "after 2 answers" in failures["items"][0]["error"]
    assert not out.exists()  # nothing valid: no query file


def test_json_mode_is_dropped_when_the_server_rejects_it(tmp_path):
    fake = FakeLLM(n=2, default="no-json-mode")
    with FakeServer(fake) as server:
        summary = generate_query_file(make_items(TITLES), tmp_path / "q.jsonl",
                                      settings(server, concurrency=1), n_queries=2,
                                      progress=False)  # fmt: skip
    assert summary.ok and summary.requests == 5
    assert ["response_format" in r.body for r in fake.requests] == [True] + [False] * 4
    assert json.loads((tmp_path / "q.jsonl.meta.json").read_text())["json_mode"] is False


@pytest.mark.parametrize(
    ("behaviour", "message"), [("401", "check --api-key"), ("404", "check --base-url")]
)
def test_bad_key_or_url_stops_the_run(tmp_path, behaviour, message):
    fake = FakeLLM(default=behaviour)
    with FakeServer(fake) as server, pytest.raises(ConfigError, match=message):
        generate_query_file(make_items(TITLES * 5), tmp_path / "q.jsonl", settings(server),
                            progress=False)  # fmt: skip
    assert len(fake.requests) <= 4  # at most one per worker
    assert KEY not in str(fake.requests[0].body)


def test_a_stopped_run_keeps_what_it_finished(tmp_path):
    fake = FakeLLM(n=2, scripts={"Up": ["401"]})
    cache = tmp_path / "q.jsonl.cache.jsonl"
    with FakeServer(fake) as server, pytest.raises(ConfigError, match="refused"):
        generate_query_file(make_items(TITLES), tmp_path / "q.jsonl",
                            settings(server, concurrency=1), n_queries=2,
                            progress=False)  # fmt: skip
    assert [r["item_id"] for r in read_jsonl(cache)] == [100, 101]


def test_a_broken_setup_stops_after_repeated_failures(tmp_path):
    fake = FakeLLM(n=2, default="short")
    titles = [f"Movie number {i}" for i in range(ABORT_AFTER_FAILURES + 10)]
    with FakeServer(fake) as server, pytest.raises(ConfigError, match="items all failed"):
        generate_query_file(make_items(titles), tmp_path / "q.jsonl",
                            settings(server, max_reasks=0, concurrency=1), n_queries=2,
                            progress=False)  # fmt: skip
    assert len(fake.requests) == ABORT_AFTER_FAILURES


def test_generator_interface_per_item_and_random_split():
    items = make_items(TITLES)
    with FakeServer(FakeLLM(n=3)) as server:
        paper = LLMQueryGenerator(settings(server), n_queries=3, progress=False)
        frame = paper.generate(items, per_item=4, seed=0)
        random_split = LLMQueryGenerator(settings(server), n_queries=3, split="random",
                                         progress=False)  # fmt: skip
        a = random_split.generate(items, per_item=6, seed=1)
        b = random_split.generate(items, per_item=6, seed=1)
        c = random_split.generate(items, per_item=6, seed=2)
    assert frame.columns == ["query", "item_idx", "group", "split"]
    assert frame.schema["item_idx"] == pl.Int32
    per_group = frame.group_by("item_idx", "group", "split").len()
    assert per_group.height == 8 and set(per_group["len"]) == {2}
    assert set(zip(per_group["group"], per_group["split"], strict=True)) == {
        ("original", "train"), ("paraphrase", "test")}  # fmt: skip
    tests = a.filter(pl.col("split") == "test").group_by("item_idx").len()
    assert tests.height == 4 and set(tests["len"]) == {3}
    assert a["split"].to_list() == b["split"].to_list() != c["split"].to_list()


def test_cache_is_reused_keyed_by_prompt_and_locked(tmp_path):
    cache = tmp_path / "c.jsonl"
    items = make_items(TITLES)
    template = "Title: $title\nWrite $n_queries queries and paraphrases as JSON."
    fake = FakeLLM(n=2)
    with FakeServer(fake) as server:
        LLMQueryGenerator(settings(server), None, cache, 2, progress=False).generate(items)
        again = LLMQueryGenerator(settings(server), None, cache, 2, progress=False)
        assert again.generate(items).height == 16
        assert len(fake.requests) == 4 and again.summary_.cached == 4
        other = LLMQueryGenerator(settings(server), template, cache, 2, progress=False)
        other.generate(items)
    assert len(fake.requests) == 8 and other.summary_.cached == 0
    assert fake.requests[-1].body["messages"][0]["content"].startswith("Title: ")
    assert len(cache.read_text().splitlines()) == 8
    first = QueryCache(cache, "x")
    first.open()
    with pytest.raises(ConfigError, match="another process is using this cache"):
        QueryCache(cache, "x").open()
    first.close()


_CHILD = """
import sys
import polars as pl
from semid.data.llm_queries import LLMSettings, generate_query_file
titles = [f"Film {i:03d}" for i in range(int(sys.argv[3]))]
items = pl.DataFrame({"item_idx": range(len(titles)), "item_id": range(len(titles)),
                      "title": titles}, schema_overrides={"item_idx": pl.Int32})
settings = LLMSettings(sys.argv[1], "m", None, timeout=5, concurrency=4)
generate_query_file(items, sys.argv[2], settings, n_queries=2, progress=False)
"""


def test_resumes_after_kill_without_repeating_finished_items(tmp_path):
    n_items = 60
    out = tmp_path / "q.jsonl"
    cache = tmp_path / "q.jsonl.cache.jsonl"
    fake = FakeLLM(n=2, delay_s=0.03)
    with FakeServer(fake) as server:
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, server.base_url, str(out), str(n_items)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.poll() is None:
            if cache.exists() and len(cache.read_bytes().splitlines()) >= 10:
                break
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait()
        with cache.open("ab") as fh:  # a line cut off by the kill
            fh.write(b'{"item_id": 59, "queries": ["half a li')
        finished = {json.loads(line)["item_id"] for line in cache.read_bytes().splitlines()[:-1]}
        assert 10 <= len(finished) < n_items and not out.exists()
        before = len(fake.requests)
        fake.delay_s = 0.0
        titles = [f"Film {i:03d}" for i in range(n_items)]
        items = pl.DataFrame(
            {"item_idx": range(n_items), "item_id": range(n_items), "title": titles},
            schema_overrides={"item_idx": pl.Int32},
        )
        rerun = LLMSettings(server.base_url, "m", None, timeout=5, concurrency=4)  # as the child
        summary = generate_query_file(items, out, rerun, n_queries=2, progress=False)
    asked_again = {int(t.split()[1]) for t in fake.titles()[before:]}
    assert not asked_again & finished
    assert asked_again == set(range(n_items)) - finished
    assert summary.cached == len(finished) and summary.generated == n_items - len(finished)
    assert {line["movieId"] for line in read_jsonl(out)} == set(range(n_items))
    records = read_jsonl(cache)  # the truncated line is gone, no item twice
    assert sorted(r["item_id"] for r in records) == list(range(n_items))


# ----------------------------------------------------------------------------- command line


def _movielens(folder: Path) -> Path:
    folder.mkdir()
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n1,"Dark Knight, The (2008)",Action|Crime\n'
        "2,Heat (1995),Crime\n3,Up (2009),Animation\n"
    )
    rows = [f"{u},{m},4.0,{u * 100 + m}" for u in (1, 2) for m in (1, 2, 3)]
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(rows))
    return folder


def test_cli_generates_resumes_and_exits_1_on_failures(tmp_path):
    app = typer.Typer()
    app.command()(generate_command)
    app.command("other")(lambda: None)
    data = _movielens(tmp_path / "ml")
    out = tmp_path / "q.jsonl"
    fake = FakeLLM(n=2, scripts={"Heat": ["short"] * 3})
    runner = CliRunner()
    with FakeServer(fake) as server:
        env = {"SEMID_LLM_BASE_URL": server.base_url, "SEMID_LLM_MODEL": "cli-model",
               "SEMID_LLM_API_KEY": KEY}  # fmt: skip
        args = ["generate", "--llm", "--dataset", str(data), "--out", str(out),
                "--n-queries", "2", "--no-progress", "--timeout", "1"]  # fmt: skip
        first = runner.invoke(app, args, env=env)
        second = runner.invoke(app, args, env=env)
        nollm = runner.invoke(app, ["generate", "--out", str(out)], env=env)
    assert first.exit_code == 1, first.output
    assert "1 item(s) failed" in first.output and "Heat" in first.output
    assert second.exit_code == 0, second.output
    assert [r.title for r in fake.requests].count("The Dark Knight") == 1  # cached
    assert fake.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert {line["movieId"] for line in read_jsonl(out)} == {1, 2, 3}
    assert isinstance(nollm.exception, ConfigError) and "--llm" in str(nollm.exception)
