"""Quantizers: codes in range, seeded determinism, config presets, clear errors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from pydantic import ValidationError

from semid.errors import ConfigError, DataError
from semid.quantizers import (
    RQVAE,
    RQKMeans,
    fsq_levels_for,
    level_sizes,
    make_quantizer,
)
from semid.quantizers.balanced import BalancedRQKMeans, balanced_assign
from semid.quantizers.config import RESIDUAL_LFQ_TUNED, RQ_VAE_TUNED, QuantizerConfig

TINY_VAE = {"hidden_sizes": [16], "latent_dim": 4, "epochs": 2, "batch_size": 64}
NAMES = [
    "rq-kmeans",
    "rq-kmeans-balanced",
    "rq-vae",
    "rq-vae-defaults",
    "rq-vae-tuned",
    "residual-lfq",
    "residual-lfq-tuned",
    "residual-fsq",
    "dictionary",
]


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(300, 16)).astype(np.float32)


def tiny(name: str, levels: int = 2, k: int = 8, **extra) -> QuantizerConfig:
    return QuantizerConfig(
        name=name,
        levels=levels,
        codebook_size=k,
        vae=TINY_VAE,
        dictionary={"max_iter": 1},
        **extra,
    )


def fit_codes(cfg: QuantizerConfig, X: np.ndarray, seed: int = 0):
    q = make_quantizer(cfg, seed)
    if hasattr(q, "fit_encode"):
        return q, q.fit_encode(X)
    return q, q.fit(X).encode(X)


@pytest.mark.parametrize("name", NAMES)
def test_codes_in_range_deterministic_and_decodable(name: str, X: np.ndarray) -> None:
    q, codes = fit_codes(tiny(name), X)
    assert codes.dtype == np.int64 and codes.shape == (300, 2)
    sizes = level_sizes(q)
    assert all(codes[:, j].min() >= 0 and codes[:, j].max() < sizes[j] <= 8 for j in range(2))
    _, again = fit_codes(tiny(name), X)
    np.testing.assert_array_equal(codes, again)
    X_hat = q.decode(codes)
    assert X_hat.dtype == np.float32 and X_hat.shape == X.shape
    # the fitted quantizer survives pickling (how build_ids saves it) and encodes identically
    restored = pickle.loads(pickle.dumps(q))
    np.testing.assert_array_equal(restored.encode(X[:50]), q.encode(X[:50]))


def test_learned_quantizers_log_training(X: np.ndarray) -> None:
    q, _ = fit_codes(tiny("rq-vae"), X)
    assert [e["epoch"] for e in q.training_log_] == [1, 2]
    assert len(q.training_log_[-1]["perplexity"]) == 2
    assert all(1.0 <= p <= 8.0 for p in q.training_log_[-1]["perplexity"])


def test_seed_changes_rq_kmeans(X: np.ndarray) -> None:
    _, a = fit_codes(tiny("rq-kmeans"), X, seed=0)
    _, b = fit_codes(tiny("rq-kmeans"), X, seed=1)
    assert not np.array_equal(a, b)


def test_rq_kmeans_recovers_separated_clusters() -> None:
    rng = np.random.default_rng(1)
    centers = np.eye(4, 8, dtype=np.float32) * 10
    labels = np.repeat(np.arange(4), 50)
    X = centers[labels] + rng.normal(scale=0.1, size=(200, 8)).astype(np.float32)
    codes = RQKMeans(n_levels=1, codebook_size=4, nredo=5).fit_encode(X)[:, 0]
    # one code per cluster: the partition equals the true one up to renaming
    assert len({(a, b) for a, b in zip(labels, codes, strict=True)}) == 4


def test_faiss_rq_backend_and_power_of_two(X: np.ndarray) -> None:
    q = RQKMeans(n_levels=2, codebook_size=8, backend="faiss-rq", niter=5).fit(X)
    codes = q.encode(X)
    assert codes.shape == (300, 2) and codes.max() < 8
    # the decoded codebooks agree with the codes faiss computed
    assert q.decode(codes).shape == X.shape
    with pytest.raises(ConfigError, match="power of 2"):
        RQKMeans(n_levels=2, codebook_size=12, backend="faiss-rq").fit(X)


def test_balanced_assignment_respects_capacity_and_matches_greedy() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    C = rng.normal(size=(4, 3)).astype(np.float32)
    got = balanced_assign(X, C, capacity=10)
    assert np.bincount(got, minlength=4).tolist() == [10, 10, 10, 10]
    # reference: walk all (item, code) pairs by increasing distance
    dist = ((X[:, None, :] - C[None]) ** 2).sum(-1)
    want = np.full(40, -1)
    room = [10] * 4
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, c = divmod(int(flat), 4)
        if want[i] < 0 and room[c] > 0:
            want[i], room[c] = c, room[c] - 1
    np.testing.assert_array_equal(got, want)


def test_balanced_quantizer_bounds_bucket_sizes(X: np.ndarray) -> None:
    codes = BalancedRQKMeans(n_levels=2, codebook_size=8).fit_encode(X)
    for level in range(2):
        assert np.bincount(codes[:, level]).max() <= math.ceil(300 / 8)


def test_fsq_levels() -> None:
    assert fsq_levels_for(256) == [8, 6, 5]
    assert fsq_levels_for(1024) == [8, 5, 5, 5]
    assert fsq_levels_for(32) == [8, 4]
    assert math.prod(fsq_levels_for(100)) <= 100


def test_invalid_inputs_fail_clearly(X: np.ndarray) -> None:
    with pytest.raises(DataError, match="2-D"):
        RQKMeans(n_levels=2, codebook_size=8).fit(X[0])
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        RQKMeans(n_levels=2, codebook_size=8).fit(bad)
    with pytest.raises(ConfigError, match="larger than the number of items"):
        RQKMeans(n_levels=2, codebook_size=512).fit(X)
    with pytest.raises(ConfigError, match="power of 2"):
        make_quantizer(tiny("residual-lfq", k=12), 0).fit(X)
    with pytest.raises(ConfigError, match="call fit"):
        RQKMeans(n_levels=2, codebook_size=8).encode(X)
    fitted = RQKMeans(n_levels=2, codebook_size=8).fit(X)
    with pytest.raises(DataError, match="expected 16 columns"):
        fitted.encode(X[:, :5])
    with pytest.raises(DataError, match=r"values must be in \[0, 8\)"):
        fitted.decode(np.array([[0, 8]]))


def test_config_names_and_presets() -> None:
    with pytest.raises(ValidationError, match="unknown quantizer 'rq-foo'"):
        QuantizerConfig(name="rq-foo")
    with pytest.raises(ValidationError):
        QuantizerConfig(name="rq-vae", vae={"optimizer": "sgd"})
    tuned = QuantizerConfig(name="rq-vae-tuned", vae={"epochs": 3})
    for key, value in RQ_VAE_TUNED.items():
        if key != "epochs":
            assert getattr(tuned.vae, key) == value
    assert tuned.vae.epochs == 3  # an explicit field wins over the preset
    # the dumped config re-validates to the same values (saved configs are reproducible)
    again = QuantizerConfig.model_validate(tuned.model_dump(mode="json"))
    assert again == tuned
    lfq = QuantizerConfig(name="residual-lfq-tuned")
    assert lfq.vae.commitment_loss_weight == RESIDUAL_LFQ_TUNED["commitment_loss_weight"] == 0.25
    assert lfq.vae.normalize == "standardize" and lfq.vae.max_steps == 1500
    assert QuantizerConfig(name="residual-lfq").vae.commitment_loss_weight == 0.0
    defaults = QuantizerConfig(name="rq-vae-defaults")
    assert defaults.vae.kmeans_init is False and defaults.vae.threshold_ema_dead_code == 0
    assert defaults.vae.decay == 0.8 and defaults.vae.optimizer == "adam"


def test_rq_vae_faiss_init_sets_codebooks(X: np.ndarray) -> None:
    q = RQVAE(
        n_levels=2,
        codebook_size=8,
        hidden_sizes=[16],
        latent_dim=4,
        faiss_kmeans_init=True,
        max_steps=1,
    )
    q.fit(X)
    # after one step every code of level 1 is still in use (k-means init covers the data)
    assert len(np.unique(q.encode(X)[:, 0])) == 8
