import asyncio

import httpx
import numpy as np
import polars as pl
import pytest
from serving_toy import N_ITEMS, one_thread, toy_items, toy_run

from semid.api import MAX_K, MicroBatcher, background_server, create_app
from semid.errors import DataError
from semid.serving import load

ITEMS = toy_items()
DRAMA = set(ITEMS.filter(pl.col("genres").list.contains("Drama"))["item_id"].to_list())


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load(toy_run(tmp_path_factory.mktemp("toy")), precision="fp32")


@pytest.fixture(scope="module")
def server(model):
    app = create_app(model, max_batch=16, max_wait_ms=30)
    with background_server(app) as url:
        yield url, app


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], timeout=30) as c:
        yield c


def detail(response) -> str:
    return str(response.json()["detail"])


def test_health(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["items"] == N_ITEMS
    assert body["id_spaces"] == ["item"] and body["max_k"] == MAX_K


def test_search_returns_ranked_items(client, model):
    response = client.post("/search", json={"query": "toy story", "k": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["k"] == 4 and len(body["results"]) == 4
    top = body["results"][0]
    assert top["rank"] == 1 and top["item_id"] == 1 and top["title"] == "Toy Story"
    assert top["year"] == 1995 and "Animation" in top["genres"]
    expected = model.search("toy story", k=4)
    assert [r["item_id"] for r in body["results"]] == expected["item_id"].to_list()
    np.testing.assert_allclose([r["score"] for r in body["results"]], expected["score"], atol=1e-4)


def test_search_filters_fill_the_top_k(client):
    body = client.post(
        "/search",
        json={"query": "a documentary movie called gimme danger", "k": 10, "genres": ["Drama"]},
    ).json()
    ids = [r["item_id"] for r in body["results"]]
    assert len(ids) == 10 and set(ids) <= DRAMA
    body = client.post(
        "/search", json={"query": "a movie", "k": 5, "year_min": 2005, "year_max": 2009}
    ).json()
    assert len(body["results"]) == 5 and all(2005 <= r["year"] <= 2009 for r in body["results"])
    body = client.post("/search", json={"query": "a movie", "k": 5, "allow": [747, 1]}).json()
    assert sorted(r["item_id"] for r in body["results"]) == [1, 747]


def test_recommend(client, model):
    body = client.post("/recommend", json={"history": [1, 234], "k": 3}).json()
    assert [r["item_id"] for r in body["results"]] == model.recommend([1, 234], k=3)[
        "item_id"
    ].to_list()
    body = client.post("/recommend", json={"history": [1], "k": 5, "genres": ["Drama"]}).json()
    assert len(body["results"]) == 5 and {r["item_id"] for r in body["results"]} <= DRAMA


def test_exact_mode_is_at_least_as_likely_as_beam(client):
    beam = client.post("/search", json={"query": "a war movie", "k": 2}).json()
    exact = client.post("/search", json={"query": "a war movie", "k": 2, "exact": True}).json()
    assert exact["results"][0]["score"] >= beam["results"][0]["score"] - 1e-5


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("/search", {"query": "   "}, "query is empty"),
        ("/search", {"query": ""}, "at least 1 character"),
        ("/search", {"k": 3}, "'query'"),
        ("/search", {"query": "toy", "k": 0}, "greater than or equal to 1"),
        ("/search", {"query": "toy", "k": MAX_K + 1}, f"less than or equal to {MAX_K}"),
        ("/search", {"query": "toy", "topk": 3}, "Extra inputs are not permitted"),
        ("/search", {"query": "toy", "genres": ["Cartoon"]}, "unknown genre(s) ['Cartoon']"),
        ("/search", {"query": "toy", "year_min": 2010, "year_max": 2000}, "is after year_max"),
        ("/search", {"query": "toy", "year_min": 1700, "year_max": 1800}, "matches no items"),
        ("/search", {"query": "toy", "allow": [1, 424242]}, "unknown item id(s): [424242]"),
        ("/search", {"query": "toy", "allow": []}, "at least 1 item"),
        ("/recommend", {"history": []}, "at least 1 item"),
        ("/recommend", {"history": [1, 424242]}, "unknown item id(s): [424242]"),
        ("/recommend", {"history": ["abc"]}, "valid integer"),
    ],
)
def test_invalid_requests_get_a_422_with_a_clear_message(client, path, body, message):
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert message in detail(response)


def test_items_endpoint(client):
    body = client.get("/items/1").json()
    assert body["title"] == "Toy Story" and body["semantic_ids"] == {"item": "<a_0><b_0><c_0>"}
    missing = client.get("/items/424242")
    assert missing.status_code == 404 and "unknown item id" in detail(missing)
    assert client.get("/items/abc").status_code == 422


def test_openapi_documents_every_endpoint(client):
    schema = client.get("/openapi.json").json()
    assert {"/search", "/recommend", "/items/{item_id}", "/health"} <= set(schema["paths"])
    assert "SearchRequest" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_concurrent_requests_are_decoded_together(server, model):
    url, app = server
    queries = ["toy story", "a drama movie", "sinister", "a comedy", "pan", "felon"] * 2
    histories = [[1], [234, 459], [747]]

    async def fire():
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            searches = [c.post("/search", json={"query": q, "k": 3}) for q in queries]
            recs = [c.post("/recommend", json={"history": h, "k": 2}) for h in histories]
            return await asyncio.gather(*searches, *recs)

    before = app.state.batcher.stats()
    responses = asyncio.run(fire())
    after = app.state.batcher.stats()
    assert all(r.status_code == 200 for r in responses)
    for query, response in zip(queries, responses, strict=False):
        got = [r["item_id"] for r in response.json()["results"]]
        assert got == model.search(query, k=3)["item_id"].to_list()
    for history, response in zip(histories, responses[len(queries) :], strict=True):
        got = [r["item_id"] for r in response.json()["results"]]
        assert got == model.recommend(history, k=2)["item_id"].to_list()
    served = after["requests"] - before["requests"]
    batches = after["batches"] - before["batches"]
    assert served == len(queries) + len(histories)
    assert batches < served and after["largest_batch"] >= 2


def test_a_failing_request_does_not_break_its_batch_mates(model):
    async def scenario():
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=20)
        await batcher.start()
        try:
            jobs = [
                batcher.submit("rec", [1], 2, None, False),
                batcher.submit("rec", [424242], 2, None, False),
                batcher.submit("rec", [234, 459], 2, None, False),
            ]
            return await asyncio.gather(*jobs, return_exceptions=True), batcher.stats()
        finally:
            await batcher.stop()

    (first, bad, last), stats = asyncio.run(scenario())
    assert isinstance(bad, DataError) and "424242" in str(bad)
    assert first["item_id"].to_list() == model.recommend([1], k=2)["item_id"].to_list()
    assert last["item_id"].to_list() == model.recommend([234, 459], k=2)["item_id"].to_list()
    assert stats["batches"] == 1 and stats["decode_calls"] == 4  # the batch, then one by one


def test_batcher_settings_are_validated(model):
    with pytest.raises(DataError, match="max_batch=0"):
        MicroBatcher(model, max_batch=0)
