"""Seq2seq backbones: a small T5 from scratch, a sentence encoder + fresh decoder, or any local
Hugging Face seq2seq checkpoint. All of them are returned with the semantic-ID tokens added."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BertConfig,
    BertLMHeadModel,
    EncoderDecoderModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

from semid.errors import ConfigError
from semid.generative.config import ModelConfig


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has AVX512-BF16 or AMX (where bf16 autocast is faster than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pretrained_tokenizer(
    cfg: ModelConfig, encoder_path: str | None
) -> PreTrainedTokenizerFast | None:
    """The tokenizer a pretrained backbone brings, or None for ``t5-scratch``."""
    if cfg.backbone == "t5-scratch":
        return None
    path = encoder_path if cfg.backbone == "sentence-encoder" else cfg.backbone
    if path is None or not Path(path).exists():
        raise ConfigError(f"model.backbone={cfg.backbone}: no local model folder at {path}")
    return cast(PreTrainedTokenizerFast, AutoTokenizer.from_pretrained(path))


def build_model(
    cfg: ModelConfig,
    vocab_size: int,
    pad_id: int,
    eos_id: int,
    encoder_path: str | None = None,
    text_dim: int | None = None,
) -> PreTrainedModel:
    """Create the seq2seq model with an embedding table of ``vocab_size`` tokens.

    ``encoder_path``: the sentence encoder of ``sentence-encoder`` / ``text-t5``; ``text_dim``:
    its output dimension (``text-t5``).
    """
    if cfg.backbone in ("t5-scratch", "text-t5"):
        config = T5Config(  # type: ignore[call-arg]  # T5Config takes PretrainedConfig kwargs
            vocab_size=vocab_size,
            d_model=cfg.d_model,
            d_ff=cfg.d_ff,
            d_kv=cfg.d_kv,
            num_layers=cfg.num_layers,
            num_decoder_layers=cfg.num_decoder_layers,
            num_heads=cfg.num_heads,
            dropout_rate=cfg.dropout,
            feed_forward_proj="gated-gelu",
            # transformers >= 5 always ties T5's input and output tables; this flag only says
            # whether decoder outputs are scaled by d_model**-0.5 before the tied head
            # (text-t5: yes, the original T5 convention with unit-variance embeddings).
            tie_word_embeddings=cfg.backbone == "text-t5",
            pad_token_id=pad_id,
            eos_token_id=eos_id,
            decoder_start_token_id=pad_id,
        )
        if cfg.backbone == "text-t5":
            from semid.generative.textmodel import build_text_t5

            if encoder_path is None or text_dim is None:
                raise ConfigError("model.backbone=text-t5: no sentence encoder to read texts")
            model = build_text_t5(
                config,
                text_dim,
                cfg.text_slots,
                encoder_path,
                pooled_history=cfg.history_input == "items",
                text_skip=cfg.text_skip,
                text_tokens=cfg.text_tokens,
            )
            with torch.no_grad():
                model.shared.weight.normal_(0.0, 1.0)
            return model
        t5 = T5ForConditionalGeneration(config)
        # With unscaled decoder outputs, a head of std 1 gives logits of std ~sqrt(d_model) and
        # a first loss of ~60 nats: draw the (tied) table with std d_model**-0.5 instead.
        with torch.no_grad():
            t5.lm_head.weight.normal_(0.0, cfg.d_model**-0.5)
        return t5
    if cfg.backbone == "sentence-encoder":
        return _sentence_encoder_backbone(cfg, vocab_size, pad_id, eos_id, encoder_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(cfg.backbone)
    model.resize_token_embeddings(vocab_size)
    model.pretrained_prefix = ""  # every parameter (train.pretrained_lr)
    return model


def _sentence_encoder_backbone(
    cfg: ModelConfig, vocab_size: int, pad_id: int, eos_id: int, encoder_path: str | None
) -> PreTrainedModel:
    from transformers import AutoModel

    if encoder_path is None:
        raise ConfigError("model.backbone=sentence-encoder: no sentence encoder folder")
    encoder = AutoModel.from_pretrained(encoder_path)
    encoder.resize_token_embeddings(vocab_size)
    decoder_cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=encoder.config.hidden_size,
        num_hidden_layers=cfg.num_decoder_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.d_ff,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        is_decoder=True,
        add_cross_attention=True,
        pad_token_id=pad_id,
    )
    model = EncoderDecoderModel(encoder=encoder, decoder=BertLMHeadModel(decoder_cfg))
    model.config.decoder_start_token_id = pad_id
    model.config.pad_token_id = pad_id
    model.config.eos_token_id = eos_id
    # the sentence encoder's weights (train.pretrained_lr)
    cast(Any, model).pretrained_prefix = "encoder."
    return model


def load_model(folder: Path) -> PreTrainedModel:
    """Load a saved generator (any of the backbones)."""
    config_file = Path(folder) / "config.json"
    if config_file.exists() and '"text_slots"' in config_file.read_text():
        from semid.generative.textmodel import TextConditionedT5

        return TextConditionedT5.from_pretrained(folder)
    try:
        return AutoModelForSeq2SeqLM.from_pretrained(folder)
    except ValueError:
        return EncoderDecoderModel.from_pretrained(folder)


def init_id_rows(model: PreTrainedModel, vocab, vectors: dict[str, list]) -> None:
    """Set the input and output rows of every ID token from ``vectors[space][col]``
    (unit-variance rows, see :func:`semid.generative.textmodel.id_token_vectors`).

    Rows keep the scale of the table they go into: unit variance for input tables and for a
    tied table whose decoder outputs are scaled (T5 convention), ``d_model**-0.5`` for an
    output head that sees unscaled decoder states.
    """
    head_scale = model.config.d_model**-0.5
    # transformers types the embedding modules loosely (a Module's attribute: Tensor | Module)
    inputs = cast(torch.Tensor, model.get_input_embeddings().weight)
    outputs = cast(torch.Tensor, model.get_output_embeddings().weight)
    tied = inputs.data_ptr() == outputs.data_ptr()
    scaled_outputs = bool(getattr(model.config, "scale_decoder_outputs", False))
    with torch.no_grad():
        for name, cols in vectors.items():
            space = vocab.spaces[name]
            for offset, rows in zip(space.offsets, cols, strict=True):
                block = torch.from_numpy(rows).to(inputs.dtype)
                if tied:
                    inputs[offset : offset + len(block)] = block * (
                        1.0 if scaled_outputs else head_scale
                    )
                else:
                    inputs[offset : offset + len(block)] = block
                    outputs[offset : offset + len(block)] = block * head_scale


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
