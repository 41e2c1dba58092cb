"""Beam search constrained by a prefix trie: only valid item IDs can come out."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from semid.generative.trie import PrefixTrie
from semid.generative.vocab import IdSpaceTokens


@torch.no_grad()
def constrained_beam_search(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    trie: PrefixTrie,
    space: IdSpaceTokens,
    beam_size: int,
    decoder_start_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top ``beam_size`` items for each input, by the ID's log-likelihood.

    Returns ``(items, scores)`` of shape (batch, beam_size); ``items`` is -1 where fewer valid
    IDs than beams exist. Scores are sums of log-probabilities (full-vocabulary softmax, the
    same normalisation as the training loss) over the ID's tokens.
    """
    device = input_ids.device
    batch = input_ids.shape[0]
    encoder_hidden = model.get_encoder()(
        input_ids=input_ids, attention_mask=attention_mask
    ).last_hidden_state
    beam_of = torch.arange(batch, device=device)  # input row of each live beam
    nodes = torch.zeros(batch, dtype=torch.long)  # trie node of each live beam (CPU)
    scores = torch.zeros(batch, device=device)
    prefix = torch.full((batch, 1), decoder_start_id, dtype=torch.long, device=device)
    width = 1
    for col in range(trie.depth):
        logits = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden[beam_of]),
            attention_mask=attention_mask[beam_of],
            decoder_input_ids=prefix,
        ).logits[:, -1, :]
        logp = torch.log_softmax(logits.float(), dim=-1)
        card = space.cardinalities[col]
        offset = space.offsets[col]
        logp = logp[:, offset : offset + card]
        allowed = trie.allowed_mask(nodes, col).to(device)
        cand = (scores[:, None] + logp).masked_fill(~allowed, float("-inf"))
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
        child = torch.zeros_like(parent_nodes)
        child[valid.cpu()] = trie.step(parent_nodes[valid.cpu()], safe_code[valid.cpu()], col)
        nodes = child
        prefix = torch.cat([prefix[parent], (safe_code.to(device) + offset)[:, None]], dim=1)
        beam_of = beam_of[parent]
        scores = top_scores
        width = k
    items = trie.leaf_item[nodes].to(device).view(batch, width)
    scores = scores.view(batch, width)
    items = torch.where(torch.isfinite(scores), items, torch.full_like(items, -1))
    if width < beam_size:
        pad = beam_size - width
        items = torch.cat([items, items.new_full((batch, pad), -1)], dim=1)
        scores = torch.cat([scores, scores.new_full((batch, pad), float("-inf"))], dim=1)
    return items, scores
