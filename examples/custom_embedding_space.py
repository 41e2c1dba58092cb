"""Add your own item-embedding space to semid in ~40 lines.

An embedding space is a builder ``build(inputs) -> {id_space: (n_items, d) matrix}`` registered
under a name (:class:`semid.embeddings.spaces.EmbeddingSpace`). ``inputs`` holds the item texts,
the training histories and queries, the config and the seed (see
:class:`~semid.embeddings.spaces.SpaceInputs`); semid normalises and saves the matrices and
writes ``meta.json``. This one needs no neural encoder: TF-IDF of the item texts reduced to
``embedding.rec_dim`` dimensions by a truncated SVD (LSA). It has no query encoder
(``text_encoder="none"``), so the dense search reference is skipped and text-t5 generators
read queries with minilm.

    python examples/custom_embedding_space.py
    semid run --plugin examples/custom_embedding_space.py --embedding tfidf-svd

A space assembled from others names them in ``components=("search", "rec")``: they are built
first as stages of their own (``embeddings/search``, ``embeddings/rec``) and their folders
arrive in ``inputs.components``.
"""

from __future__ import annotations

import numpy as np

from semid.embeddings.spaces import EmbeddingSpace, SpaceInputs, register_embedding_space


def tfidf_svd(texts: list[str], dim: int, seed: int) -> np.ndarray:
    """LSA vectors of ``texts``: TF-IDF, then a truncated SVD to at most ``dim`` dimensions."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=1).fit_transform(texts)
    dim = max(1, min(dim, tfidf.shape[1] - 1, len(texts) - 1))
    return TruncatedSVD(dim, random_state=seed).fit_transform(tfidf).astype(np.float32)


def build_tfidf_svd(inputs: SpaceInputs) -> dict[str, np.ndarray]:
    vectors = tfidf_svd(inputs.texts, inputs.cfg.rec_dim, inputs.seed)
    inputs.facts["tfidf_dim"] = int(vectors.shape[1])
    return {"item": vectors}


register_embedding_space(
    "tfidf-svd",
    EmbeddingSpace(build_tfidf_svd, text_encoder="none"),
    "LSA: TF-IDF of the item texts reduced by a truncated SVD (examples/)",
)

if __name__ == "__main__":
    texts = ["a space western", "a western with horses", "robots in space", "a love story"]
    X = tfidf_svd(texts, dim=2, seed=0)
    cosine = X[0] @ X[1] / np.linalg.norm(X[[0, 1]], axis=1).prod()
    print(f"item vectors {X.shape}; cosine of the two westerns {cosine:.2f}")
