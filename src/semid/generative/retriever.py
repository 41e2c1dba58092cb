"""A trained generator packaged for use: text or history in, ranked catalogue items out."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from semid.generative.decode import constrained_beam_search
from semid.generative.examples import InputEncoder, pad
from semid.generative.lru import LRUCache
from semid.generative.model import autocast_dtype, load_model
from semid.generative.textmodel import FrozenTextEncoder
from semid.generative.trie import PrefixTrie
from semid.generative.vocab import SemanticVocab
from semid.io import read_json, write_json, write_npy

ENCODER_FILE = "input_encoder.json"


def text_encoder_location(model: PreTrainedModel) -> str:
    """The sentence encoder a text-t5 model reads texts with: the folder it was trained with,
    or, on another machine where that folder is absent, the same encoder resolved by name."""
    from semid.embeddings.encoders import resolve_encoder

    path = model.config.text_encoder_path
    name = getattr(model.config, "text_encoder_name", None)
    if Path(path).exists() or not name:
        return path
    return resolve_encoder(name)


class GenerativeRetriever:
    """Seq2seq model + vocabulary + one prefix trie per ID space.

    Parameters
    ----------
    model : PreTrainedModel
        The trained seq2seq model.
    vocab : SemanticVocab
        Text tokenizer and ID tokens.
    id_codes : dict of str to ndarray
        Codes (n_items, n_cols) of each ID space, rows aligned with the item table.
    max_query_tokens, max_history_items : int
        Input truncation, as in training.
    precision : {"fp32", "auto", "bf16"}
        Decoding precision. fp32 by default: bf16 autocast rounds the logits the beams are
        ranked by ("auto" = bf16 where the hardware is fast at it).
    level_softmax : bool
        Score each step with a softmax over the level's codes (models trained that way).
    text_encoder : FrozenTextEncoder, optional
        The frozen sentence encoder of a text-t5 model (embeds queries).
    trie_cache_size : int
        Restricted tries (decode-time filters) kept, least recently used first out: building
        one takes milliseconds to tens of milliseconds on a large catalogue, and evaluation and
        serving repeat the same filters.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        vocab: SemanticVocab,
        id_codes: dict[str, np.ndarray],
        max_query_tokens: int,
        max_history_items: int,
        precision: str = "fp32",
        trie_cache_size: int = 64,
        level_softmax: bool = False,
        text_encoder: FrozenTextEncoder | None = None,
    ) -> None:
        self.model = model.eval()
        self.precision = precision
        self.vocab = vocab
        self.id_codes = id_codes
        self.level_softmax = level_softmax
        self.text_encoder = text_encoder
        slots = int(getattr(model.config, "text_slots", 0) or 0)
        if slots and text_encoder is None:
            # queries are embedded at the precision the training texts were
            precision = str(getattr(model.config, "text_precision", "fp32"))
            text_encoder = self.text_encoder = FrozenTextEncoder(
                text_encoder_location(model), precision=precision
            )
        self.inputs = InputEncoder(
            vocab,
            id_codes,
            max_query_tokens,
            max_history_items,
            text_slots=slots,
            pooled_history=bool(getattr(model.config, "pooled_history", False)),
            text_tokens=int(getattr(model.config, "text_tokens", 0) or 0) if slots else 0,
        )
        self.tries = {
            name: PrefixTrie(codes, vocab.spaces[name].cardinalities)
            for name, codes in id_codes.items()
        }
        self.trie_cache = LRUCache(trie_cache_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def trie_for(self, task: str, allowed_items: np.ndarray | None = None) -> PrefixTrie:
        """The task's trie, or one restricted to ``allowed_items`` (decode-time filter)."""
        space = self.vocab.task_space[task]
        if allowed_items is None:
            return self.tries[space]
        allowed = np.unique(np.asarray(allowed_items, dtype=np.int64))
        digest = hashlib.blake2b(allowed.tobytes(), digest_size=16).hexdigest()

        def build() -> PrefixTrie:
            codes = self.id_codes[space][allowed]
            return PrefixTrie(codes, self.vocab.spaces[space].cardinalities, items=allowed)

        return self.trie_cache.get((space, digest), build)

    def text_vectors(self, texts: Sequence[str], progress: bool = False) -> np.ndarray | None:
        """Sentence vectors of search texts (text-t5), or None for token-input models."""
        if self.text_encoder is None:
            return None
        return self.text_encoder.encode(list(texts), progress=progress)

    def history_tokens(self, histories: Sequence[Sequence[int]]) -> np.ndarray | None:
        """ID tokens of each history's items for a pooled-history model, else None."""
        return self.inputs.history_items(histories) if self.inputs.pooled_history else None

    def encoder_embeds(
        self,
        input_ids: torch.Tensor,
        idx: np.ndarray,
        vectors: np.ndarray | None,
        item_tokens: np.ndarray | None,
    ) -> torch.Tensor | None:
        """Encoder input embeddings of rows ``idx`` (text-t5), or None for token models."""
        if vectors is None and item_tokens is None:
            return None
        rows = torch.arange(len(idx), device=self.device)
        extra = {}
        if vectors is not None:
            extra["text_vectors"] = torch.from_numpy(vectors[idx]).to(self.device)
            extra["text_rows"] = rows
        if item_tokens is not None:
            extra["item_tokens"] = torch.from_numpy(item_tokens[idx]).to(self.device)
            extra["item_rows"] = rows
        return self.model.embed_inputs(input_ids, **extra)

    def logit_prior(self, idx: np.ndarray, vectors: np.ndarray | None) -> torch.Tensor | None:
        """text-t5's per-input logit prior of rows ``idx`` (None when the model has none)."""
        if vectors is None or getattr(self.model, "text_skip", None) is None:
            return None
        return self.model.logit_prior(torch.from_numpy(vectors[idx]).to(self.device))

    def query_tokens_read(self) -> int:
        """Input tokens of a search text the model reads (longer texts are truncated)."""
        if self.text_encoder is not None:
            return self.text_encoder.max_tokens
        return self.inputs.max_query_tokens

    def _rank(
        self,
        token_lists: list[list[int]],
        task: str,
        k: int,
        batch_size: int,
        allowed_items: np.ndarray | None,
        progress: bool,
        vectors: np.ndarray | None = None,
        banned: Sequence[Sequence[int]] | None = None,
        beams: int | None = None,
        item_tokens: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        trie = self.trie_for(task, allowed_items)
        space = self.vocab.space_for(task)
        start_id = self.model.config.decoder_start_token_id
        amp = autocast_dtype(self.precision, self.device)
        all_items, all_scores = [], []
        order = np.argsort([len(t) for t in token_lists], kind="stable")
        batches = range(0, len(order), batch_size)
        for start in tqdm(batches, desc=f"decode {task}", disable=not progress, unit="batch"):
            idx = order[start : start + batch_size]
            ids, _ = pad([token_lists[i] for i in idx], self.vocab.pad_id)
            input_ids = torch.from_numpy(ids.astype(np.int64)).to(self.device)
            mask = input_ids != self.vocab.pad_id
            with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=bool(amp)):
                embeds = self.encoder_embeds(input_ids, idx, vectors, item_tokens)
                prior = self.logit_prior(idx, vectors)
                items, scores = constrained_beam_search(
                    self.model,
                    input_ids,
                    mask,
                    trie,
                    space,
                    max(k, beams or k),
                    start_id,
                    banned=[np.asarray(banned[i], np.int64) for i in idx] if banned else None,
                    top_k=k,
                    level_softmax=self.level_softmax,
                    inputs_embeds=embeds,
                    logit_prior=prior,
                )
            all_items.append(items.cpu().numpy())
            all_scores.append(scores.cpu().numpy())
        out_items = np.empty((len(token_lists), k), dtype=np.int64)
        out_scores = np.empty((len(token_lists), k), dtype=np.float32)
        if len(order):
            out_items[order] = np.concatenate(all_items)
            out_scores[order] = np.concatenate(all_scores)
        return out_items, out_scores

    def search(
        self,
        queries: Sequence[str],
        k: int = 30,
        batch_size: int = 32,
        allowed_items: np.ndarray | None = None,
        progress: bool = False,
        beams: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and log-likelihoods for each query (-1 pads).

        ``beams``: beam width when wider than ``k`` (the top ``k`` beams are returned).
        """
        vectors = self.text_vectors(queries, progress)
        return self._rank(
            self.inputs.search(queries),
            "search",
            k,
            batch_size,
            allowed_items,
            progress,
            vectors=vectors,
            beams=beams,
        )

    def recommend(
        self,
        histories: Sequence[Sequence[int]],
        k: int = 30,
        batch_size: int = 32,
        allowed_items: np.ndarray | None = None,
        progress: bool = False,
        exclude_seen: bool = False,
        beams: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` next items for each history of item indices (-1 pads).

        ``exclude_seen``: the history's items are banned inside the beam search, so the ``k``
        items returned are unseen ones.
        """
        return self._rank(
            self.inputs.history(histories),
            "rec",
            k,
            batch_size,
            allowed_items,
            progress,
            banned=histories if exclude_seen else None,
            beams=beams,
            item_tokens=self.history_tokens(histories),
        )

    def save(self, folder: Path) -> None:
        """Write a self-contained folder: weights, tokenizer, ID spaces, input settings."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.vocab.save(folder)
        for name, codes in self.id_codes.items():
            write_npy(folder / f"codes_{name}.npy", codes)
        write_json(
            folder / ENCODER_FILE,
            {
                "max_query_tokens": self.inputs.max_query_tokens,
                "max_history_items": self.inputs.max_history_items,
                "spaces": sorted(self.id_codes),
                "level_softmax": self.level_softmax,
            },
        )

    @classmethod
    def load(
        cls, folder: Path, device: str | torch.device = "cpu", precision: str = "fp32"
    ) -> GenerativeRetriever:
        """Load a folder written by :meth:`save`."""
        folder = Path(folder)
        meta = read_json(folder / ENCODER_FILE)
        vocab = SemanticVocab.load(folder)
        codes = {name: np.load(folder / f"codes_{name}.npy") for name in meta["spaces"]}
        model = load_model(folder).to(device)  # type: ignore[arg-type]  # transformers types .to
        return cls(
            model,
            vocab,
            codes,
            meta["max_query_tokens"],
            meta["max_history_items"],
            precision,
            level_softmax=bool(meta.get("level_softmax", False)),
        )
