"""Exact ranking: score every item of the catalogue with the generator, no beam search.

Each candidate's score is the teacher-forced log-likelihood of its ID tokens, with the same
normalisation as :func:`semid.generative.decode.constrained_beam_search` (full-vocabulary
log-softmax at every position, summed over the ID's tokens). The input is encoded once; its
encoder output is then expanded over chunks of candidate items, so the cost is one decoder pass
per (input, item) pair: fine for catalogues of thousands of items, and the reference that shows
how much the beam search loses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from semid.errors import DataError
from semid.generative.decode import encode_inputs
from semid.generative.examples import pad
from semid.generative.model import autocast_dtype
from semid.generative.retriever import GenerativeRetriever


@torch.no_grad()
def score_candidates(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    id_tokens: torch.Tensor,
    decoder_start_id: int,
    max_rows: int = 1024,
    cold_share: torch.Tensor | None = None,
    last_level: tuple[int, int] | None = None,
    inputs_embeds: torch.Tensor | None = None,
    level_ranges: list[tuple[int, int]] | None = None,
    logit_prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-likelihood of every candidate ID for every input.

    Parameters
    ----------
    model : PreTrainedModel
        The seq2seq generator.
    input_ids, attention_mask : Tensor of shape (batch, seq_len)
        Encoder inputs.
    id_tokens : Tensor of shape (n_candidates, n_cols)
        Token ids of each candidate's ID (codes plus the space's offsets).
    decoder_start_id : int
        The decoder's start token.
    max_rows : int
        Decoder rows (input x candidate pairs) per forward pass; bounds memory.
    cold_share : Tensor of shape (n_candidates,), optional
        For items added after training (see :func:`score_all`): the log of their share of the
        last level's probability after their prefix (``-log(group size)``), NaN for the others.
        Needs ``last_level``.
    last_level : (int, int), optional
        First token id and number of tokens of the last level.
    inputs_embeds : Tensor, optional
        Encoder input embeddings instead of ``input_ids`` (text-t5).
    level_ranges : list of (int, int), optional
        (first token id, count) of each column: normalise each position over its level's
        codes (models trained with a level-restricted softmax), as beam search does.
    logit_prior : Tensor of shape (batch, vocab), optional
        Added to every position's logits of each input (text-t5's ``logit_prior``).

    Returns
    -------
    Tensor of shape (batch, n_candidates)
        Sum over the ID's tokens of the full-vocabulary log-probabilities (float32, on CPU).
    """
    device = input_ids.device
    batch = input_ids.shape[0]
    encoder_hidden = encode_inputs(model, input_ids, attention_mask, inputs_embeds)
    id_tokens = id_tokens.to(device)
    n_cand, n_cols = id_tokens.shape
    start = torch.full((n_cand, 1), decoder_start_id, dtype=torch.long, device=device)
    decoder_inputs = torch.cat([start, id_tokens[:, :-1]], dim=1)
    chunk = max(1, max_rows // batch)
    out = torch.empty(batch, n_cand, dtype=torch.float32)
    for lo in range(0, n_cand, chunk):
        hi = min(lo + chunk, n_cand)
        width = hi - lo
        hidden = encoder_hidden.repeat_interleave(width, dim=0)
        mask = attention_mask.repeat_interleave(width, dim=0)
        logits = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            attention_mask=mask,
            decoder_input_ids=decoder_inputs[lo:hi].repeat(batch, 1),
        ).logits.float()
        if logit_prior is not None:
            logits = logits + logit_prior.float().repeat_interleave(width, dim=0)[:, None, :]
        if level_ranges is not None:
            logits = _mask_levels(logits, level_ranges)
        logp = torch.log_softmax(logits, dim=-1)
        target = id_tokens[lo:hi].repeat(batch, 1)[..., None]
        token_logp = logp.gather(-1, target).squeeze(-1)
        share = None if cold_share is None else cold_share[lo:hi].to(device).repeat(batch)
        if share is not None and last_level is not None and bool((~share.isnan()).any()):
            first, count = last_level
            level_mass = torch.logsumexp(logp[:, -1, first : first + count], dim=-1)
            token_logp[:, -1] = torch.where(share.isnan(), token_logp[:, -1], level_mass + share)
        out[:, lo:hi] = token_logp.sum(-1).view(batch, width).cpu()
    return out


def _mask_levels(logits: torch.Tensor, level_ranges: list[tuple[int, int]]) -> torch.Tensor:
    """A copy of ``logits`` (rows, cols, vocab) with -inf outside each column's level range."""
    logits = logits.clone()
    for col, (first, count) in enumerate(level_ranges):
        outside = torch.ones(logits.shape[-1], dtype=torch.bool, device=logits.device)
        outside[first : first + count] = False
        logits[:, col, outside] = float("-inf")
    return logits


def score_all(
    retriever: GenerativeRetriever,
    token_lists: list[list[int]],
    task: str,
    allowed_items: np.ndarray | None = None,
    batch_size: int = 8,
    max_rows: int = 1024,
    cold_items: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    item_tokens: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score every decodable item (or every allowed one) for each input.

    ``vectors`` / ``item_tokens``: the inputs' sentence vectors (text-t5 search inputs) or
    history ID tokens (pooled-history rec inputs).

    The candidates are the leaves of the task's trie, so items that share a full ID with another
    item (no disambiguation level) are left out exactly as beam search leaves them out.

    ``cold_items`` (experimental) are item indices added after training (``semid ids assign``).
    The generator never emitted their disambiguation token, which carries no meaning, so the
    log-likelihood of that token is replaced by an equal share of the probability the model
    gives the whole last level after their prefix: ``log(sum of last-level probabilities) -
    log(items sharing the prefix)``.

    Returns
    -------
    candidates : ndarray of shape (n_candidates,)
        Item indices, in trie order.
    scores : ndarray of shape (n_inputs, n_candidates)
        Log-likelihood of each candidate's ID given each input.
    """
    trie = retriever.trie_for(task, allowed_items)
    candidates = trie.leaf_item.numpy()
    space = retriever.vocab.space_for(task)
    codes = retriever.id_codes[space.name][candidates]
    id_tokens = torch.from_numpy(space.tokens(codes))
    start_id = retriever.model.config.decoder_start_token_id
    cold_share = None
    if cold_items is not None and len(cold_items):
        all_codes = retriever.id_codes[space.name]
        _, group, sizes = np.unique(
            all_codes[:, :-1], axis=0, return_inverse=True, return_counts=True
        )
        share = -np.log(sizes[group.reshape(-1)][candidates].astype(np.float32))
        is_cold = np.isin(candidates, np.asarray(cold_items, dtype=np.int64))
        cold_share = torch.from_numpy(np.where(is_cold, share, np.nan).astype(np.float32))
    last_level = (space.offsets[-1], space.cardinalities[-1])
    level_ranges = None
    if retriever.level_softmax:
        level_ranges = list(zip(space.offsets, space.cardinalities, strict=True))
    device = retriever.device
    amp = autocast_dtype(retriever.precision, device)
    scores = np.empty((len(token_lists), len(candidates)), dtype=np.float32)
    for lo in range(0, len(token_lists), batch_size):
        ids, _ = pad(token_lists[lo : lo + batch_size], retriever.vocab.pad_id)
        input_ids = torch.from_numpy(ids.astype(np.int64)).to(device)
        mask = input_ids != retriever.vocab.pad_id
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=bool(amp)):
            rows = np.arange(lo, min(lo + batch_size, len(token_lists)))
            embeds = retriever.encoder_embeds(input_ids, rows, vectors, item_tokens)
            prior = retriever.logit_prior(rows, vectors)
            block = score_candidates(
                retriever.model,
                input_ids,
                mask,
                id_tokens,
                start_id,
                max_rows,
                cold_share,
                last_level,
                embeds,
                level_ranges,
                prior,
            )
        scores[lo : lo + len(ids)] = block.numpy()
    return candidates, scores


def exact_rank(
    retriever: GenerativeRetriever,
    token_lists: list[list[int]],
    task: str,
    k: int,
    allowed_items: np.ndarray | None = None,
    batch_size: int = 8,
    cold_items: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    item_tokens: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items by exact log-likelihood, in the same format as beam search.

    ``vectors`` / ``item_tokens``: see :func:`score_all`.

    Returns ``(items, scores)`` of shape (n_inputs, k): item indices (-1 pads where fewer than
    ``k`` candidates exist) and their log-likelihoods (``-inf`` pads).
    """
    if k < 1:
        raise DataError(f"k={k}: must be at least 1")
    candidates, scores = score_all(
        retriever,
        token_lists,
        task,
        allowed_items,
        batch_size,
        cold_items=cold_items,
        vectors=vectors,
        item_tokens=item_tokens,
    )
    top = min(k, len(candidates))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    items = np.full((len(token_lists), k), -1, dtype=np.int64)
    best = np.full((len(token_lists), k), -np.inf, dtype=np.float32)
    items[:, :top] = candidates[order]
    best[:, :top] = np.take_along_axis(scores, order, axis=1)
    return items, best


def exact_search(
    retriever: GenerativeRetriever,
    queries: Sequence[str],
    k: int = 30,
    allowed_items: np.ndarray | None = None,
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact counterpart of :meth:`GenerativeRetriever.search`."""
    return exact_rank(
        retriever,
        retriever.inputs.search(queries),
        "search",
        k,
        allowed_items,
        batch_size,
        vectors=retriever.text_vectors(queries),
    )


def exact_recommend(
    retriever: GenerativeRetriever,
    histories: Sequence[Sequence[int]],
    k: int = 30,
    allowed_items: np.ndarray | None = None,
    batch_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact counterpart of :meth:`GenerativeRetriever.recommend`."""
    return exact_rank(
        retriever,
        retriever.inputs.history(histories),
        "rec",
        k,
        allowed_items,
        batch_size,
        item_tokens=retriever.history_tokens(histories),
    )
