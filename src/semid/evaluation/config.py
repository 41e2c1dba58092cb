"""Config of the evaluation stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EvalConfig(BaseModel):
    """How the trained model and the reference points are scored."""

    model_config = ConfigDict(extra="forbid")

    ks: list[int] = Field([1, 10, 30], description="Cut-offs for Recall@K and NDCG@K.")
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
        40,
        ge=1,
        description="Training epochs of the SASRec baseline (chosen on validation: "
        "benchmarks/sasrec_tuning.py).",
    )
    sasrec_dim: int = Field(
        64, ge=8, description="SASRec hidden size (chosen on validation with sasrec_epochs)."
    )
    splits: list[Literal["valid", "test"]] = Field(
        ["valid", "test"],
        description="Splits scored in one run: 'valid' (choices are made here: half of each "
        "item's held-out queries; the train prefix predicts the validation item) and 'test' "
        "(the final tables: the other half; prefix + validation item predict the test item). "
        "Metric keys: search/rec (test), search_valid/rec_valid.",
    )
    real_queries: Path | None = Field(
        Path("../shared/data/trec-tot-2023-movies/queries-{dataset}.jsonl"),
        description="JSONL of real requests scored as a second search test set (search_real) "
        "when the file exists; {dataset} is replaced by data.dataset; relative paths are read "
        "from the working directory, then beside the semid checkout. None = off.",
    )
    max_title_queries: int | None = Field(
        2000,
        ge=0,
        description="Items whose title alone is scored as a query (search_title, an indexing "
        "check: the title is a training input); a seeded sample, None = every item, 0 = off.",
    )
    precision: str = Field(
        "fp32",
        pattern="^(auto|fp32|bf16)$",
        description="Decoding precision. fp32: bf16 rounds the logits the beams are ranked by "
        "(measured: benchmarks/bf16_decoding.py).",
    )
    beam_width: int | None = Field(
        None,
        ge=1,
        description="Beams kept while decoding (default beam_size); wider beams make the "
        "beam_size items returned closer to the model's exact top.",
    )

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, value: list[str]) -> list[str]:
        from semid.evaluation.baselines import BASELINES

        return [BASELINES.validate(name) for name in value]
