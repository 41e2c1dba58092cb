"""Turn queries, item texts and user histories into (input tokens, target ID tokens) pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from semid.generative.vocab import SemanticVocab


@dataclass
class Examples:
    """Padded token matrices of one set of examples."""

    inputs: np.ndarray  # int32 (n, max_len), right-padded
    lengths: np.ndarray  # int32 (n,)
    targets: np.ndarray  # int64 (n, n_cols): target ID tokens
    task: np.ndarray  # int8 (n,): 0 search/indexing, 1 rec
    text_vectors: np.ndarray | None = None  # float32 (n_texts, dim): text-t5 inputs
    text_index: np.ndarray | None = None  # int32 (n,): row of text_vectors, -1 for none
    item_tokens: np.ndarray | None = None  # int64 (n_rec, max_items, n_cols): pooled histories
    item_index: np.ndarray | None = None  # int32 (n,): row of item_tokens, -1 for none
    noise_std: np.ndarray | None = None  # float32 (n,): per-step noise on the text vector

    def with_noise(self, rows: slice, std: float) -> Examples:
        """These examples with Gaussian noise of ``std`` per entry on the text vectors of
        ``rows`` at every training step (see ``generative.train.noisy``)."""
        noise = np.zeros(len(self), np.float32) if self.noise_std is None else self.noise_std
        noise = noise.copy()
        noise[rows] = std
        return replace(self, noise_std=noise)

    def __len__(self) -> int:
        return len(self.lengths)


class InputEncoder:
    """Renders search inputs and histories as token ids, identically in training and serving."""

    def __init__(
        self,
        vocab: SemanticVocab,
        id_codes: dict[str, np.ndarray],
        max_query_tokens: int,
        max_history_items: int,
        text_slots: int = 0,
        pooled_history: bool = False,
        text_tokens: int = 0,
    ) -> None:
        self.vocab = vocab
        self.text_tokens = text_tokens
        self.max_query_tokens = max_query_tokens
        self.max_history_items = max_history_items
        self.text_slots = text_slots
        self.pooled_history = pooled_history
        self.id_tokens = {name: vocab.spaces[name].tokens(c) for name, c in id_codes.items()}

    def search(self, texts: Sequence[str]) -> list[list[int]]:
        """``<task_search> text tokens </s>`` for each text; with ``text_slots`` (text-t5),
        ``<task_search>`` + that many placeholders (filled by the text's vector) + the first
        ``text_tokens`` word pieces of the text + ``</s>``."""
        head, eos = self.vocab.task_token("search"), self.vocab.eos_id
        if self.text_slots:
            slots = [head] + [self.vocab.unk_id] * self.text_slots
            if not self.text_tokens:
                return [[*slots, eos] for _ in texts]
            pieces = self._word_pieces(texts, self.text_tokens)
            return [[*slots, *ids, eos] for ids in pieces]
        return [[head, *ids, eos] for ids in self._word_pieces(texts, self.max_query_tokens)]

    def _word_pieces(self, texts: Sequence[str], limit: int) -> list[list[int]]:
        """The first ``limit`` word-piece ids of each text."""
        return self.vocab.tokenizer(
            list(texts), add_special_tokens=False, truncation=True, max_length=limit
        )["input_ids"]

    def history(self, histories: Sequence[Sequence[int]]) -> list[list[int]]:
        """``<task_rec>`` + the ID tokens of the last items of each history + ``</s>``; with
        ``pooled_history``, one placeholder per item (filled by :meth:`history_items`)."""
        table = self.id_tokens[self.vocab.task_space["rec"]]
        head, eos = self.vocab.task_token("rec"), self.vocab.eos_id
        out = []
        for items in histories:
            recent = list(items)[-self.max_history_items :]
            if self.pooled_history:
                out.append([head] + [self.vocab.unk_id] * len(recent) + [eos])
            else:
                out.append([head, *table[recent].reshape(-1).tolist(), eos])
        return out

    def history_items(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """ID tokens of the last items of each history: (n, max_history_items, n_cols), most
        recent last, left-aligned, ``pad_id`` rows after the history ends."""
        table = self.id_tokens[self.vocab.task_space["rec"]]
        out = np.full(
            (len(histories), self.max_history_items, table.shape[1]), self.vocab.pad_id, np.int64
        )
        for row, items in enumerate(histories):
            recent = list(items)[-self.max_history_items :]
            out[row, : len(recent)] = table[recent]
        return out

    def targets(self, items: Sequence[int], task: str) -> np.ndarray:
        """ID tokens of each target item in the task's ID space."""
        return self.id_tokens[self.vocab.task_space[task]][np.asarray(items, dtype=np.int64)]


def pad(sequences: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token lists into an int32 matrix; returns (matrix, lengths)."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int32, count=len(sequences))
    out = np.full((len(sequences), int(lengths.max(initial=1))), pad_id, dtype=np.int32)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = seq
    return out, lengths


def rec_windows(
    train_sequences: Sequence[Sequence[int]], max_per_user: int | None
) -> tuple[list[list[int]], list[int]]:
    """Sliding windows (prefix -> next item) over each training sequence; keeps the latest."""
    histories: list[list[int]] = []
    targets: list[int] = []
    for seq in train_sequences:
        seq = list(seq)
        positions = range(1, len(seq))
        if max_per_user is not None:
            positions = positions[-max_per_user:]
        for t in positions:
            histories.append(seq[:t])
            targets.append(seq[t])
    return histories, targets


def build_examples(
    encoder: InputEncoder,
    search_texts: Sequence[str],
    search_items: Sequence[int],
    histories: Sequence[Sequence[int]],
    rec_targets: Sequence[int],
    text_vectors: np.ndarray | None = None,
) -> Examples:
    """Stack search-type examples (queries and item texts) and recommendation examples.

    ``text_vectors`` (text-t5): one sentence vector per search text, in order.
    """
    search_inputs = encoder.search(search_texts) if len(search_texts) else []
    rec_inputs = encoder.history(histories) if len(histories) else []
    inputs, lengths = pad(search_inputs + rec_inputs, encoder.vocab.pad_id)
    parts = []
    if len(search_items):
        parts.append(encoder.targets(search_items, "search"))
    if len(rec_targets):
        parts.append(encoder.targets(rec_targets, "rec"))
    task = np.concatenate(
        [np.zeros(len(search_inputs), np.int8), np.ones(len(rec_inputs), np.int8)]
    )
    index = item_tokens = item_index = None
    if text_vectors is not None:
        index = np.full(len(task), -1, dtype=np.int32)
        index[: len(search_inputs)] = np.arange(len(search_inputs), dtype=np.int32)
    if encoder.pooled_history and len(histories):
        item_tokens = encoder.history_items(histories)
        item_index = np.full(len(task), -1, dtype=np.int32)
        item_index[len(search_inputs) :] = np.arange(len(rec_inputs), dtype=np.int32)
    return Examples(
        inputs, lengths, np.concatenate(parts), task, text_vectors, index, item_tokens, item_index
    )
