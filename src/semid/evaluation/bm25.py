"""BM25 over item texts (the lexical search baseline), with ``bm25s``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class BM25Search:
    """Okapi BM25 (Lucene variant) over item texts.

    Parameters
    ----------
    k1 : float
        Term-frequency saturation.
    b : float
        Length normalisation.
    stopwords : str or None
        Stop-word list of ``bm25s`` (``"en"``) or None to keep every token.

    Attributes
    ----------
    n_items_ : int
        Indexed texts.
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en") -> None:
        self.k1 = k1
        self.b = b
        self.stopwords = stopwords

    def fit(self, item_texts: Sequence[str]) -> BM25Search:
        """Index ``item_texts`` (row i = item index i)."""
        import bm25s
        from bm25s.tokenization import Tokenizer

        if len(item_texts) == 0:
            raise ValueError("item_texts: nothing to index")
        self.tokenizer_ = Tokenizer(stopwords=self.stopwords or [])
        corpus = self.tokenizer_.tokenize(
            [str(t) for t in item_texts], return_as="ids", show_progress=False
        )
        self.index_ = bm25s.BM25(k1=self.k1, b=self.b)
        self.index_.index(corpus, show_progress=False)
        self.n_items_ = len(item_texts)
        return self

    def search(self, queries: Sequence[str], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items per query: (item_idx int64 (n, k), scores float32 (n, k)).

        Query words absent from every item text are ignored; when ``k`` exceeds the catalogue
        the extra columns are -1 with score -inf.
        """
        n = len(queries)
        top = min(k, self.n_items_)
        items = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        if n == 0:
            return items, scores
        tokens = self.tokenizer_.tokenize(
            [str(q) for q in queries], update_vocab=False, return_as="ids", show_progress=False
        )
        found, found_scores = self.index_.retrieve(tokens, k=top, show_progress=False)
        items[:, :top] = found
        scores[:, :top] = found_scores
        return items, scores
