"""Config of the evaluation stage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    """How the trained model and the reference points are scored."""

    model_config = ConfigDict(extra="forbid")

    ks: list[int] = Field([10, 30], description="Cut-offs for Recall@K and NDCG@K.")
    beam_size: int = Field(30, ge=1, description="Beams = items returned per input.")
    batch_size: int = Field(32, ge=1, description="Inputs decoded at once.")
    max_search_queries: int | None = Field(
        2000, ge=1, description="Held-out queries scored (a seeded sample); None = all."
    )
    max_rec_users: int | None = Field(None, ge=1, description="Users scored; None = all.")
    baselines: list[str] = Field(
        ["popularity", "dense", "bm25", "sasrec"],
        description="Reference points scored on the same inputs: popularity, dense (kNN with "
        "the run's embeddings), bm25 (search), sasrec (recommendation).",
    )
    exclude_seen: bool = Field(
        True,
        description="Never recommend an item of the input's own history (on the test split: "
        "the train prefix and the validation item). One rule for every method that ranks items "
        "for a user (generator, dense kNN, ENMF/ALS user vectors, SASRec, popularity); each "
        "still returns a full top-K of unseen items.",
    )
    sasrec_epochs: int = Field(
        40, ge=1, description="Training epochs of the SASRec baseline (converges by ~40 here)."
    )
    split: str = Field("test", pattern="^(test|valid)$", description="Which target to score.")
