"""ENMF: Efficient Neural Matrix Factorization without Sampling (Chen et al., TOIS 2020).

Score of user ``u`` for item ``v``: ``r̂_uv = h^T (p_u ⊙ q_v)``. The loss weighs *every*
(user, item) pair, with no negative sampling::

    L = sum_{u,v} c_uv (r_uv - r̂_uv)^2,   r_uv = 1, c_uv = 1 if observed; r_uv = 0, c_uv = c0 else

computed without materialising the user x item matrix. Splitting it into a sum over all pairs
at weight c0 and a correction over the observed pairs,

    sum_{u,v} c0 r̂_uv^2 = c0 sum_{i,j} (h_i h_j) (sum_u p_ui p_uj) (sum_v q_vi q_vj)
    L = that + sum_{(u,v) observed} [(1 - c0) r̂_uv^2 - 2 r̂_uv + 1]

costs O((|U| + |V|) d^2 + |observed| d) per pass.

Item vectors for semantic IDs are ``h ⊙ q_v`` (:attr:`ENMF.item_embeddings_`): the item in the
geometry the model scores with, since ``r̂_uv = p_u · (h ⊙ q_v)``. ``q_v`` alone is only defined
up to a per-dimension rescaling absorbed by ``h`` (and dimensions where ``h_i < 0`` point
backwards), so distances between raw ``q_v`` depend on that arbitrary split.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from semid.embeddings.collaborative import CollaborativeEmbedder


def enmf_loss(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    h: torch.Tensor,
    pos_rows: torch.Tensor,
    pos_items: torch.Tensor,
    neg_weight: float,
) -> torch.Tensor:
    """ENMF whole-data loss of a batch of users, in O((B + |V|) d^2 + |pos| d).

    Parameters
    ----------
    user_vectors : (B, d) the batch's user vectors ``p_u``.
    item_vectors : (n_items, d) every item vector ``q_v``.
    h : (d,) the prediction vector.
    pos_rows, pos_items : the observed pairs, as rows of ``user_vectors`` and item indices.
    neg_weight : c0, the weight of unobserved pairs.
    """
    all_pairs = neg_weight * torch.sum(
        torch.outer(h, h) * (user_vectors.T @ user_vectors) * (item_vectors.T @ item_vectors)
    )
    r_pos = (user_vectors[pos_rows] * item_vectors[pos_items]) @ h
    observed = torch.sum((1.0 - neg_weight) * r_pos**2 - 2.0 * r_pos + 1.0)
    return all_pairs + observed


def naive_enmf_loss(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    h: torch.Tensor,
    interactions: torch.Tensor,
    neg_weight: float,
) -> torch.Tensor:
    """The same loss on the full (B, n_items) matrix: reference for tests only."""
    scores = (user_vectors * h) @ item_vectors.T
    weights = torch.where(interactions > 0, torch.ones_like(scores), neg_weight)
    return torch.sum(weights * (interactions - scores) ** 2)


class ENMF(CollaborativeEmbedder):
    """ENMF (user-based) trained with Adam on the whole-data weighted squared loss.

    Parameters
    ----------
    dim : int
        Embedding dimension.
    epochs : int
        Passes over the users.
    neg_weight : float
        c0: weight of every unobserved (user, item) pair; observed pairs weigh 1.
    lr : float
        Adam learning rate.
    batch_size : int
        Users per step.
    dropout : float
        Dropout on the user vector ``p_u`` (the original applies it there).
    weight_decay : float
        Adam L2 penalty on all parameters.
    init_std : float
        Standard deviation of the normal initialisation of ``p`` and ``q`` (``h`` starts at 1).
    device : str
        ``cpu`` or ``cuda``.
    random_state : int
        Seeds initialisation, dropout and batch order.
    progress : bool
        Show a progress bar.

    Attributes
    ----------
    user_factors_ : ndarray (n_users, dim)
        ``p_u``, one row per training sequence.
    item_factors_ : ndarray (n_items, dim)
        ``q_v``.
    h_ : ndarray (dim,)
        The prediction vector.
    item_embeddings_ : ndarray (n_items, dim)
        ``h ⊙ q_v``: ``user_embeddings_ @ item_embeddings_.T`` are the model's scores.
    user_embeddings_ : ndarray (n_users, dim)
        ``p_u``.
    loss_curve_ : list of float
        Mean loss per user, per epoch.
    n_items_without_interactions_ : int
        Items absent from every training sequence (their vectors are only pushed to zero).
    """

    def __init__(
        self,
        *,
        dim: int = 64,
        epochs: int = 100,
        neg_weight: float = 0.1,
        lr: float = 0.01,
        batch_size: int = 64,
        dropout: float = 0.3,
        weight_decay: float = 0.0,
        init_std: float = 0.1,
        device: str = "cpu",
        random_state: int = 0,
        progress: bool = True,
    ) -> None:
        self.dim = dim
        self.epochs = epochs
        self.neg_weight = neg_weight
        self.lr = lr
        self.batch_size = batch_size
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.init_std = init_std
        self.device = device
        self.random_state = random_state
        self.progress = progress

    @property
    def _label(self) -> str:
        return "ENMF"

    def _fit_matrix(self, matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        generator = torch.Generator().manual_seed(self.random_state)
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        device = torch.device(self.device)
        n_users, n_items = matrix.shape

        def normal(*shape: int) -> torch.nn.Parameter:
            values = torch.randn(*shape, generator=generator) * self.init_std
            return torch.nn.Parameter(values.to(device))

        p = normal(n_users, self.dim)
        q = normal(n_items, self.dim)
        h = torch.nn.Parameter(torch.ones(self.dim, device=device))
        optimizer = torch.optim.Adam([p, q, h], lr=self.lr, weight_decay=self.weight_decay)
        drop = torch.nn.Dropout(self.dropout)

        bar = tqdm(range(self.epochs), desc="ENMF", disable=not self.progress)
        n_batches = max(1, -(-n_users // self.batch_size))
        for _ in bar:
            total = 0.0
            for users in np.array_split(rng.permutation(n_users), n_batches):
                block = matrix[users].tocoo()
                rows = torch.from_numpy(block.row.astype(np.int64)).to(device)
                items = torch.from_numpy(block.col.astype(np.int64)).to(device)
                user_vectors = drop(p[torch.from_numpy(users).to(device)])
                loss = enmf_loss(user_vectors, q, h, rows, items, self.neg_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            self.loss_curve_.append(round(total / n_users, 6))
            bar.set_postfix(loss=self.loss_curve_[-1])

        self.user_factors_ = p.detach().cpu().numpy().astype(np.float32)
        self.item_factors_ = q.detach().cpu().numpy().astype(np.float32)
        self.h_ = h.detach().cpu().numpy().astype(np.float32)
        return self.user_factors_, self.item_factors_ * self.h_
