import numpy as np
import polars as pl
import pytest
from serving_toy import N_ITEMS, copy_run, one_thread, toy_codes, toy_items, toy_run
from serving_toy import TINY as TINY_T5

from semid.assign import assign_codes, assign_items, read_new_items
from semid.errors import ConfigError, DataError
from semid.serving import load

ITEMS = toy_items()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return toy_run(tmp_path_factory.mktemp("toy"))


class TextEmbedder:
    """Stands in for the run's sentence encoder: a fixed random vector per distinct text."""

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(text.encode()[:64].ljust(64, b"\0")[::8], "little") % 2**32
        return np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)

    def __call__(self, texts):
        return {"item": np.stack([self.vector(t) for t in texts])}


class NearestPrefix:
    """Stands in for a fitted quantizer: the code prefix of the nearest catalogue item."""

    n_levels = 2

    def __init__(self, vectors: np.ndarray, prefixes: np.ndarray) -> None:
        self.vectors, self.prefixes = vectors, prefixes

    def encode(self, X: np.ndarray) -> np.ndarray:
        d = ((X[:, None, :] - self.vectors[None]) ** 2).sum(-1)
        return self.prefixes[d.argmin(1)]


@pytest.fixture(scope="module")
def fakes():
    embed = TextEmbedder()
    vectors = embed(ITEMS["text"].to_list())["item"]
    return embed, {"item": NearestPrefix(vectors, toy_codes()[:, :2])}


def new_items(rows: list[dict]) -> pl.DataFrame:
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        pl.col("year").cast(pl.Int32),
        pl.Series("tags", [[] for _ in rows], dtype=pl.List(pl.String)),
    )


def copy_of(row: int, new_id: int) -> dict:
    item = ITEMS.row(row, named=True)
    return {
        "item_id": new_id,
        "title": item["title"],
        "year": item["year"],
        "genres": item["genres"],
        "text": item["text"],
    }


def test_new_items_continue_their_collision_group():
    existing = np.array([[0, 0, 0], [0, 0, 1], [1, 2, 0], [1, 2, 1], [1, 2, 2], [2, 2, 0]])
    prefixes = np.array([[0, 0], [0, 0], [1, 2], [3, 3], [3, 3], [2, 2]])
    out = assign_codes(existing, prefixes, [4, 4, 3])
    assert out.ok.tolist() == [True, False, False, True, True, True]
    assert out.codes[0].tolist() == [0, 0, 2]
    assert out.codes[3].tolist() == [3, 3, 0] and out.codes[4].tolist() == [3, 3, 1]
    assert out.codes[5].tolist() == [2, 2, 1]
    assert "collision group full: its prefix already has 3 items" in out.reasons[1]
    assert "disambiguation level has 3 tokens" in out.reasons[2]
    assert out.reasons[0] is None


def test_without_disambiguation_a_taken_code_is_refused():
    existing = np.array([[0, 1], [2, 3]])
    out = assign_codes(existing, np.array([[0, 1], [1, 1], [1, 1]]), [4, 4])
    assert out.ok.tolist() == [False, True, False]
    assert "no disambiguation level" in out.reasons[0]
    with pytest.raises(ConfigError, match="emits 3 codes per item but the model's IDs have 2"):
        assign_codes(existing, np.array([[0, 1, 1]]), [4, 4])


def test_codes_outside_the_vocabulary_are_refused():
    out = assign_codes(np.array([[0, 0, 0]]), np.array([[5, 0]]), [4, 4, 2])
    assert not out.ok[0] and "outside the model's vocabulary" in out.reasons[0]
    out = assign_codes(np.array([[0, 0]]), np.array([[5, 0]]), [4, 4])
    assert not out.ok[0] and "outside the model's vocabulary" in out.reasons[0]


def test_read_new_items_builds_text_like_the_loader(tmp_path):
    path = tmp_path / "new.csv"
    path.write_text(
        "movieId,title,year,genres,tags\n"
        "900001,Robot Toys,2024,Animation|Children,Pixar|toys|pixar\n"
        "900002,Quiet Film,,Drama,\n"
    )
    frame = read_new_items(path)
    assert frame["item_id"].to_list() == [900001, 900002]
    assert frame["genres"].to_list() == [["Animation", "Children"], ["Drama"]]
    assert frame["year"].to_list() == [2024, None]
    assert frame["text"][0] == "Robot Toys (2024). Genres: Animation, Children. Tags: pixar, toys"
    assert frame["text"][1] == "Quiet Film. Genres: Drama"
    assert frame["tags"][0].to_list() == ["pixar", "toys"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("item_id,name\n1,x\n", r"missing column\(s\) \['title'\]"),
        ("item_id,title\nabc,x\n", r"item_id must be an integer, got \['abc'\]"),
        ("item_id,title\n5,x\n5,y\n", r"duplicate item_id\(s\) \[5\]"),
        ("item_id,title,year\n5,x,soon\n", r"year must be an integer \(item_id\(s\) \[5\]\)"),
        ("item_id,title\n5, \n", r"empty title for item_id\(s\) \[5\]"),
        ("item_id,title\n", "no rows"),
    ],
)
def test_read_new_items_errors_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "new.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_new_items(path)
    assert str(path) in str(info.value)


def test_assigned_items_are_decodable_at_once(trained, fakes, tmp_path):
    run_dir = copy_run(trained, tmp_path / "run")
    embed, quantizers = fakes
    frame = new_items(
        [
            copy_of(3, 900003),  # group (0, 1) holds 2 items -> index 2
            copy_of(0, 900000),  # group (0, 0) is full (3 tokens) -> refused
            copy_of(10, 900010),  # a group of one -> index 1
            {
                "item_id": 900099,
                "title": "Robot Toys",
                "year": 2024,
                "genres": ["Animation"],
                "text": "Robot Toys (2024). Genres: Animation",
            },
        ]
    )
    (run_dir / "id_table.csv").write_text("item_id,title,semantic_id\n")
    result = assign_items(run_dir, frame, embed, quantizers)
    assert result.folder == run_dir / "model"
    assert sorted(result.assigned["item_id"].to_list()) == [900003, 900010, 900099]
    assert result.rejected["item_id"].to_list() == [900000]
    assert "collision group full" in result.rejected["reason"][0]

    model = load(run_dir, precision="fp32")
    assert model.n_items == N_ITEMS + 3
    codes = model.retriever.id_codes["item"]
    assert codes[N_ITEMS].tolist() == [0, 1, 2]
    assert codes[N_ITEMS + 1].tolist() == toy_codes()[10, :2].tolist() + [1]
    assert model.item(900003)["semantic_ids"]["item"] == "<a_0><b_1><c_2>"
    assert len({tuple(r) for r in codes.tolist()}) == len(codes)  # every ID is unique
    trie = model.retriever.trie_for("search")
    assert trie.contains(codes[N_ITEMS:]).all() and trie.n_unreachable == 0
    for new_id in (900003, 900010, 900099):
        got = model.search("a movie", k=3, allow=[new_id, 1])
        assert new_id in got["item_id"].to_list()
        assert model.recommend([1], k=2, allow=[new_id])["item_id"].to_list() == [new_id]
    # The copy of item 10 sits under the same prefix as the original; a wide beam reaches both.
    title = ITEMS["title"][10].lower()
    found = model.search(title, k=N_ITEMS + 3)["item_id"].to_list()
    assert ITEMS["item_id"][10] in found and 900010 in found
    row = model.items.filter(pl.col("item_id") == 900099).row(0, named=True)
    assert row["item_idx"] == N_ITEMS + 2 and row["genres"] == ["Animation"]
    assert model.items.schema == ITEMS.schema

    table = pl.read_csv(run_dir / "model" / "id_table.csv")
    assert table.columns == ["item_id", "title", "semantic_id"]
    assert table.height == N_ITEMS + 3 and table["semantic_id"][N_ITEMS] == "<a_0><b_1><c_2>"
    assert pl.read_csv(run_dir / "id_table.csv").equals(table)  # the run's copy follows
    log = (run_dir / "model" / "assigned_items.json").read_text()
    assert "900099" in log and "900000" in log


def test_assign_refuses_ids_already_in_the_catalogue(trained, fakes, tmp_path):
    run_dir = copy_run(trained, tmp_path / "run")
    with pytest.raises(DataError, match=r"already in the catalogue: \[1\]"):
        assign_items(run_dir, new_items([copy_of(0, 1)]), *fakes)


def test_out_dir_leaves_the_run_untouched(trained, fakes, tmp_path):
    run_dir = copy_run(trained, tmp_path / "run")
    before = (run_dir / "model" / "codes_item.npy").read_bytes()
    result = assign_items(
        run_dir, new_items([copy_of(20, 900020)]), *fakes, out_dir=tmp_path / "m2"
    )
    assert (run_dir / "model" / "codes_item.npy").read_bytes() == before
    assert load(result.folder, precision="fp32").n_items == N_ITEMS + 1
    assert (result.folder / "model.safetensors").exists()


def test_two_rounds_keep_counting_in_the_same_group(trained, fakes, tmp_path):
    run_dir = copy_run(trained, tmp_path / "run")
    first = assign_items(run_dir, new_items([copy_of(30, 900030)]), *fakes)
    second = assign_items(run_dir, new_items([copy_of(30, 900031)]), *fakes)
    third = assign_items(run_dir, new_items([copy_of(30, 900032)]), *fakes)
    assert first.assigned["item"][0].endswith("<c_1>")
    assert second.assigned["item"][0].endswith("<c_2>")
    assert third.assigned.height == 0 and "collision group full" in third.rejected["reason"][0]
    assert load(run_dir, precision="fp32").n_items == N_ITEMS + 2


def test_assign_from_a_pipeline_run_uses_its_encoder_and_quantizer(tmp_path):
    """End to end on real stage artifacts: MiniLM content space, RQ-k-means 4 x 4 IDs."""
    import torch

    from semid.cli.assign import assign_command
    from semid.config import load_config
    from semid.generative.model import build_model
    from semid.generative.retriever import GenerativeRetriever
    from semid.generative.vocab import SemanticVocab, train_text_tokenizer
    from semid.io import write_parquet
    from semid.pipeline import load_state, run_pipeline
    from semid.quantizers import load_ids

    overrides = [
        "name=mini",
        "data.max_items=40",
        "data.max_users=60",
        "data.drop_short_users=true",
        "quantizer.levels=2",
        "quantizer.codebook_size=4",
    ]
    run_dir = run_pipeline(load_config("smoke", None, overrides), tmp_path / "runs", until="ids")
    _, stages = load_state(run_dir)
    items = pl.read_parquet(stages["data"] / "items.parquet")
    space = load_ids(stages["ids"])["item"]
    torch.manual_seed(0)
    vocab = SemanticVocab.build(
        train_text_tokenizer(items["text"].to_list(), 500),
        {"item": space.cardinalities},
        {"search": "item", "rec": "item"},
    )
    model = build_model(TINY_T5, len(vocab), vocab.pad_id, vocab.eos_id)
    GenerativeRetriever(model, vocab, {"item": space.codes}, 16, 4).save(run_dir / "model")
    write_parquet(run_dir / "model" / "items.parquet", items)

    original = items.row(0, named=True)
    csv = tmp_path / "new.csv"
    pl.DataFrame(
        {
            "item_id": [900001, 900002],
            "title": [original["title"], "Robot Toys"],
            "year": [original["year"], 2024],
            "genres": ["|".join(original["genres"]), "Animation|Children"],
            "tags": ["|".join(original["tags"]), "robots"],
        }
    ).write_csv(csv)
    assign_command(run_dir, csv, None)
    grown = load(run_dir, precision="fp32")
    assert grown.n_items == items.height + 2
    copy_text = grown.items.filter(pl.col("item_id") == 900001)["text"][0]
    assert copy_text == original["text"]  # built exactly like the loader builds it
    codes = grown.retriever.id_codes["item"]
    assert codes[items.height, :2].tolist() == space.codes[0, :2].tolist()  # same prefix
    group = (space.codes[:, :2] == space.codes[0, :2]).all(axis=1).sum()
    assert codes[items.height, 2] == group  # next disambiguation token of its group
    for new_id in (900001, 900002):
        assert grown.search("a movie", k=1, allow=[new_id])["item_id"].to_list() == [new_id]


class FakeArtifact:
    def __init__(self, dim, encoder=True):
        self.spaces = {"item": np.zeros((3, dim), np.float32), "search": np.zeros((3, dim))}
        self.encoder = encoder

    def encode_queries(self, texts):
        return np.ones((len(texts), 8), np.float32) if self.encoder else None


@pytest.mark.parametrize(
    "spaces, artifact, message",
    [
        (["search", "rec"], FakeArtifact(8), "'rec' ID space is learnt from interactions"),
        (["item"], FakeArtifact(8, encoder=False), r"no text encoder \(rec-only\)"),
        (["item"], FakeArtifact(72), "encoder gives 8-d vectors but ID space 'item' is 72-d"),
    ],
)
def test_spaces_without_a_text_encoder_cannot_embed_new_items(
    monkeypatch, tmp_path, spaces, artifact, message
):
    import semid.embeddings
    from semid.assign import run_embedder

    monkeypatch.setattr(semid.embeddings, "load_embeddings", lambda folder: artifact)
    with pytest.raises(ConfigError, match=message):
        run_embedder(tmp_path, spaces)(["a new movie"])


def test_a_text_space_embeds_new_items(monkeypatch, tmp_path):
    import semid.embeddings
    from semid.assign import run_embedder

    monkeypatch.setattr(semid.embeddings, "load_embeddings", lambda folder: FakeArtifact(8))
    vectors = run_embedder(tmp_path, ["item"])(["a", "b"])
    assert vectors["item"].shape == (2, 8)
