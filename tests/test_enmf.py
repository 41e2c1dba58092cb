"""ENMF: the efficient whole-data loss is the full-matrix loss; the model learns; ALS/BPR run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semid.embeddings.collaborative import interaction_matrix
from semid.embeddings.enmf import ENMF, enmf_loss, naive_enmf_loss
from semid.errors import DataError


@pytest.mark.parametrize("neg_weight", [0.0, 0.1, 1.0])
def test_efficient_loss_equals_naive_full_matrix_loss(neg_weight):
    gen = torch.Generator().manual_seed(0)
    n_users, n_items, dim = 7, 11, 5
    p = torch.randn(n_users, dim, generator=gen, dtype=torch.float64)
    q = torch.randn(n_items, dim, generator=gen, dtype=torch.float64)
    h = torch.randn(dim, generator=gen, dtype=torch.float64)
    observed = torch.rand(n_users, n_items, generator=gen) < 0.3
    rows, items = observed.nonzero(as_tuple=True)
    fast = enmf_loss(p, q, h, rows, items, neg_weight)
    naive = naive_enmf_loss(p, q, h, observed.double(), neg_weight)
    torch.testing.assert_close(fast, naive, rtol=1e-10, atol=1e-9)
    # the gradients agree too (same function, so same training)
    params = (p.requires_grad_(), q.requires_grad_(), h.requires_grad_())
    fast_grads = torch.autograd.grad(enmf_loss(p, q, h, rows, items, neg_weight), params)
    naive_grads = torch.autograd.grad(
        naive_enmf_loss(p, q, h, observed.double(), neg_weight), params
    )
    for a, b in zip(fast_grads, naive_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_interaction_matrix_is_binary_and_validated():
    matrix = interaction_matrix([[0, 2, 2], [1]], n_items=3)
    assert matrix.toarray().tolist() == [[1, 0, 1], [0, 1, 0]]
    with pytest.raises(DataError, match="outside 0..2"):
        interaction_matrix([[3]], n_items=3)


def test_enmf_ranks_each_users_block_first():
    # two communities: users 0-9 take items 0-4, users 10-19 take items 5-9
    rng = np.random.default_rng(0)
    sequences = [
        list(rng.choice(5, size=3, replace=False) + (5 if u >= 10 else 0)) for u in range(20)
    ]
    model = ENMF(
        dim=8, epochs=60, batch_size=5, neg_weight=0.1, lr=0.05, dropout=0.0, progress=False
    ).fit(sequences, n_items=10)
    scores = model.score(range(20))
    own = np.where(np.arange(20)[:, None] >= 10, np.arange(10) >= 5, np.arange(10) < 5)
    assert scores[own].mean() > scores[~own].mean() + 0.3
    np.testing.assert_allclose(model.item_embeddings_, model.item_factors_ * model.h_)
    np.testing.assert_allclose(scores, model.user_embeddings_ @ model.item_embeddings_.T)
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    again = ENMF(
        dim=8, epochs=60, batch_size=5, neg_weight=0.1, lr=0.05, dropout=0.0, progress=False
    ).fit(sequences, n_items=10)
    np.testing.assert_array_equal(again.item_embeddings_, model.item_embeddings_)


@pytest.mark.parametrize("kind", ["als", "bpr"])
def test_implicit_models_give_dim_wide_vectors(kind):
    pytest.importorskip("implicit")
    from semid.embeddings.als import ImplicitMF

    sequences = [[0, 1, 2], [1, 2], [3, 4], [4, 5, 3]]
    model = ImplicitMF(model=kind, dim=4, epochs=10, progress=False).fit(sequences, n_items=7)
    assert model.item_embeddings_.shape == (7, 4)
    assert model.user_embeddings_.shape == (4, 4)
    assert model.n_items_without_interactions_ == 1
    assert len(model.loss_curve_) == 10
