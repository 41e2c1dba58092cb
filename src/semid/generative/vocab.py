"""The generator's vocabulary: a text tokenizer plus one token per (ID space, level, code).

Item IDs are written as ``<a_12><b_201><c_7><d_0>``: the letter names the level (the last
letter is the disambiguation level when there is one). When tasks use separate ID spaces
(``search`` and ``rec``), each space gets its own token set, e.g. ``<search:a_12>``.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from semid.errors import ConfigError
from semid.io import write_json

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
TASK_TOKENS = {"search": "<task_search>", "rec": "<task_rec>"}
VOCAB_FILE = "semantic_vocab.json"


def level_letter(level: int) -> str:
    """Letter naming a level: a, b, c, ... (aa, ab after z)."""
    letters = string.ascii_lowercase
    return letters[level] if level < 26 else letters[level // 26 - 1] + letters[level % 26]


def _token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """The id of one token (transformers types the call for a list of tokens too)."""
    return int(cast(int, tokenizer.convert_tokens_to_ids(token)))


def _word_piece_tokenizer(vocab: dict[str, int] | None = None) -> Tokenizer:
    """An empty (or ``vocab``'s) lower-cased word-piece tokenizer with BERT's pre-tokenizer."""
    model = models.WordPiece(vocab, unk_token=UNK) if vocab else models.WordPiece(unk_token=UNK)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def train_text_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a lower-cased word-piece tokenizer on ``texts`` (item texts and train queries).

    The same texts give the same vocabulary in every process. ``tokenizers``' trainer alone does
    not (huggingface/tokenizers#1794): it numbers the ``##c`` continuing-subword tokens in the
    iteration order of a hash map, and those numbers break ties between equally frequent merges.
    Listing every ``##c`` up front, sorted, fixes their numbers; the trained vocabulary is then
    rebuilt as a plain word-piece model so that only PAD/EOS/UNK are special tokens.
    """
    texts = list(texts)
    tok = _word_piece_tokenizer()
    normalizer, pre_tokenizer = tok.normalizer, tok.pre_tokenizer
    assert normalizer is not None and pre_tokenizer is not None
    continuing = sorted(
        {
            char
            for text in texts
            for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
            for char in word[1:]
        }
    )
    specials = [PAD, EOS, UNK]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=specials + [f"##{char}" for char in continuing],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    plain = _word_piece_tokenizer(tok.get_vocab())
    plain.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=plain, pad_token=PAD, eos_token=EOS, unk_token=UNK
    )


@dataclass
class IdSpaceTokens:
    """Token ids of one ID space: column ``c`` code ``k`` is token ``offsets[c] + k``."""

    name: str
    cardinalities: list[int]
    offsets: list[int]

    def tokens(self, codes: np.ndarray) -> np.ndarray:
        """Map codes (n, n_cols) to token ids (n, n_cols)."""
        return codes.astype(np.int64) + np.asarray(self.offsets, dtype=np.int64)


@dataclass
class SemanticVocab:
    """Text tokenizer + the ID tokens appended after it."""

    tokenizer: PreTrainedTokenizerFast
    spaces: dict[str, IdSpaceTokens] = field(default_factory=dict)
    task_space: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        tokenizer: PreTrainedTokenizerFast,
        cardinalities: dict[str, Sequence[int]],
        task_space: dict[str, str],
    ) -> SemanticVocab:
        """Add task tokens and one token per (space, column, code) to ``tokenizer``."""
        if tokenizer.pad_token is None:
            tokenizer.add_special_tokens({"pad_token": PAD})
        if tokenizer.eos_token is None:
            tokenizer.add_special_tokens({"eos_token": EOS})
        tokenizer.add_special_tokens(
            {"additional_special_tokens": list(TASK_TOKENS.values())},
            replace_extra_special_tokens=False,
        )
        spaces: dict[str, IdSpaceTokens] = {}
        single = len(cardinalities) == 1
        for name, cards in cardinalities.items():
            prefix = "" if single else f"{name}:"
            offsets = []
            for col, card in enumerate(cards):
                new = [f"<{prefix}{level_letter(col)}_{k}>" for k in range(int(card))]
                tokenizer.add_tokens(new, special_tokens=True)
                offsets.append(_token_id(tokenizer, new[0]))
            spaces[name] = IdSpaceTokens(name, [int(c) for c in cards], offsets)
        return cls(tokenizer, spaces, dict(task_space))

    def __len__(self) -> int:
        return len(self.tokenizer)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def unk_id(self) -> int:
        return int(self.tokenizer.unk_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def task_token(self, task: str) -> int:
        return _token_id(self.tokenizer, TASK_TOKENS[task])

    def space_for(self, task: str) -> IdSpaceTokens:
        return self.spaces[self.task_space[task]]

    def id_string(self, space: str, codes: Sequence[int]) -> str:
        """Human-readable ID, e.g. ``<a_12><b_201><c_7>``."""
        ids = self.spaces[space].tokens(np.asarray([codes]))[0]
        return "".join(self.tokenizer.convert_ids_to_tokens(ids.tolist()))

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(folder)
        write_json(
            folder / VOCAB_FILE,
            {
                "spaces": {
                    n: {"cardinalities": s.cardinalities, "offsets": s.offsets}
                    for n, s in self.spaces.items()
                },
                "task_space": self.task_space,
            },
        )

    @classmethod
    def load(cls, folder: Path) -> SemanticVocab:
        path = Path(folder) / VOCAB_FILE
        if not path.exists():
            raise ConfigError(f"{folder}: not a semid model folder ({VOCAB_FILE} missing)")
        meta = json.loads(path.read_text())
        tokenizer = cast(PreTrainedTokenizerFast, AutoTokenizer.from_pretrained(folder))
        spaces = {
            n: IdSpaceTokens(n, s["cardinalities"], s["offsets"]) for n, s in meta["spaces"].items()
        }
        return cls(tokenizer, spaces, meta["task_space"])
