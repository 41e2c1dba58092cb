"""Beam search constrained by a prefix trie: only valid item IDs can come out.

Optional per-input ban lists (e.g. the items of a user's history) are applied inside the
search: a transition into a subtree whose leaves are all banned is masked before the beams are
chosen, so a banned item never takes a beam (the K items returned are K allowed ones whenever
the trie holds that many).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from semid.generative.trie import PrefixTrie
from semid.generative.vocab import IdSpaceTokens


def _ban_mask(
    forbidden: tuple[np.ndarray, np.ndarray, np.ndarray],
    beam_rows: torch.Tensor,
    nodes: torch.Tensor,
    n_nodes: int,
    card: int,
) -> torch.Tensor | None:
    """Boolean (n_beams, card) mask of the transitions a ban list forbids, or None."""
    rows, parents, codes = forbidden
    if not len(rows):
        return None
    live = np.flatnonzero(nodes.numpy() >= 0)  # padding beams (node -1) match nothing
    beam_keys = beam_rows.cpu().numpy()[live] * n_nodes + nodes.numpy()[live]
    order = live[np.argsort(beam_keys, kind="stable")]
    sorted_keys = np.sort(beam_keys, kind="stable")
    want = rows * n_nodes + parents
    if not len(sorted_keys):
        return None
    pos = np.searchsorted(sorted_keys, want).clip(max=len(sorted_keys) - 1)
    hit = sorted_keys[pos] == want
    mask = torch.zeros(len(nodes), card, dtype=torch.bool)
    mask[torch.from_numpy(order[pos[hit]]), torch.from_numpy(codes[hit])] = True
    return mask


@torch.no_grad()
def constrained_beam_search(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: PrefixTrie,
    space: IdSpaceTokens,
    beam_size: int,
    decoder_start_id: int,
    banned: Sequence[np.ndarray] | None = None,
    top_k: int | None = None,
    level_softmax: bool = False,
    inputs_embeds: torch.Tensor | None = None,
    logit_prior: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top items for each input, by the ID's log-likelihood.

    Parameters
    ----------
    banned : list of int arrays, optional
        Items each input may not return; applied inside the search (see the module doc).
    top_k : int, optional
        Items returned per input (default ``beam_size``); a wider beam than ``top_k`` makes
        the top ``top_k`` more exact.
    level_softmax : bool
        Normalise each step over the level's code range only (how a model trained with a
        level-restricted softmax scores); else over the whole vocabulary.
    inputs_embeds : tensor, optional
        Encoder input embeddings to use instead of ``input_ids`` (text-conditioned models).
    logit_prior : tensor (batch, vocab), optional
        Added to every step's logits of each input (text-t5's ``logit_prior``).

    Returns ``(items, scores)`` of shape (batch, top_k); ``items`` is -1 where fewer valid
    IDs than requested exist. Scores are sums of log-probabilities over the ID's tokens.
    """
    top_k = beam_size if top_k is None else top_k
    device = input_ids.device
    batch = input_ids.shape[0]
    encoder_hidden = encode_inputs(model, input_ids, attention_mask, inputs_embeds)
    forbidden = trie.banned_transitions([np.asarray(b) for b in banned]) if banned else None
    beam_of = torch.arange(batch, device=device)  # input row of each live beam
    nodes = torch.zeros(batch, dtype=torch.long)  # trie node of each live beam (CPU)
    scores = torch.zeros(batch, device=device)
    prefix = torch.full((batch, 1), decoder_start_id, dtype=torch.long, device=device)
    width = 1
    for col in range(trie.depth):
        card = space.cardinalities[col]
        offset = space.offsets[col]
        logits = _next_logits(model, encoder_hidden, attention_mask, beam_of, prefix, logit_prior)
        if level_softmax:
            logp = torch.log_softmax(logits[:, offset : offset + card], dim=-1)
        else:
            logp = torch.log_softmax(logits, dim=-1)[:, offset : offset + card]
        allowed = trie.allowed_mask(nodes, col)
        if forbidden is not None:
            ban = _ban_mask(forbidden[col], beam_of, nodes, trie.n_nodes(col), card)
            if ban is not None:
                allowed &= ~ban
        cand = (scores[:, None] + logp).masked_fill(~allowed.to(device), float("-inf"))
        cand = cand.view(batch, width * card)
        k = min(beam_size, width * card)
        top_scores, top_idx = cand.topk(k, dim=1)
        parent = (top_idx // card) + torch.arange(batch, device=device)[:, None] * width
        code = top_idx % card
        parent, code, top_scores = parent.reshape(-1), code.reshape(-1), top_scores.reshape(-1)
        valid = torch.isfinite(top_scores)
        safe_code = torch.where(valid, code, torch.zeros_like(code)).cpu()
        parent_nodes = nodes[parent.cpu()]
        # Invalid (padding) beams keep a dummy node; their score stays -inf.
        child = torch.full_like(parent_nodes, -1)
        child[valid.cpu()] = trie.step(parent_nodes[valid.cpu()], safe_code[valid.cpu()], col)
        nodes = child
        prefix = torch.cat([prefix[parent], (safe_code.to(device) + offset)[:, None]], dim=1)
        beam_of = beam_of[parent]
        scores = top_scores
        width = k
    items = trie.leaf_item[nodes.clamp(min=0)].to(device).view(batch, width)
    return _top(items, scores.view(batch, width), top_k)


def encode_inputs(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    inputs_embeds: torch.Tensor | None,
) -> torch.Tensor:
    """The encoder's last hidden state, from token ids or from input embeddings."""
    encoder = model.get_encoder()
    if inputs_embeds is not None:
        return encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
    return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _next_logits(
    model: PreTrainedModel,
    encoder_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    beam_of: torch.Tensor,
    prefix: torch.Tensor,
    logit_prior: torch.Tensor | None,
) -> torch.Tensor:
    """float32 logits of the next token of every live beam (plus the input's prior)."""
    logits = (
        model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden[beam_of]),
            attention_mask=attention_mask[beam_of],
            decoder_input_ids=prefix,
        )
        .logits[:, -1, :]
        .float()
    )
    if logit_prior is not None:
        logits = logits + logit_prior[beam_of].float()
    return logits


def _top(
    items: torch.Tensor, scores: torch.Tensor, top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``top_k`` beams per input; -1 / -inf for dead beams and missing columns."""
    items = torch.where(torch.isfinite(scores), items, torch.full_like(items, -1))
    items, scores = items[:, :top_k], scores[:, :top_k]
    if items.shape[1] < top_k:
        pad = top_k - items.shape[1]
        batch = items.shape[0]
        items = torch.cat([items, items.new_full((batch, pad), -1)], dim=1)
        scores = torch.cat([scores, scores.new_full((batch, pad), float("-inf"))], dim=1)
    return items, scores
