"""Quantizers and collaborative embedders are scikit-learn estimators."""

import inspect

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from semid.embeddings.als import ImplicitMF
from semid.embeddings.collaborative import CollaborativeEmbedder
from semid.embeddings.enmf import ENMF
from semid.errors import ConfigError
from semid.quantizers import make_quantizer
from semid.quantizers.balanced import BalancedRQKMeans
from semid.quantizers.base import BaseQuantizer
from semid.quantizers.config import QuantizerConfig, VAEConfig
from semid.quantizers.dictionary import ResidualDictionary
from semid.quantizers.rq_kmeans import RQKMeans
from semid.quantizers.rq_vae import RQVAE

QUANTIZERS = [RQKMeans, BalancedRQKMeans, RQVAE, ResidualDictionary]
EMBEDDERS = [ENMF, ImplicitMF]
X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)


@pytest.mark.parametrize("cls", QUANTIZERS + EMBEDDERS)
def test_hyper_parameters_are_keyword_only(cls):
    assert issubclass(cls, BaseEstimator)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params and all(p.kind is p.KEYWORD_ONLY for p in params)
    with pytest.raises(TypeError):
        cls(2)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_clone_gives_the_same_params_and_an_unfitted_copy(cls):
    q = cls(n_levels=2, codebook_size=4, random_state=3)
    if isinstance(q, RQVAE):
        q.set_params(hidden_sizes=[8], latent_dim=4, max_steps=2, progress=False)
    q.fit(X)
    copy = clone(q)
    assert copy.get_params() == q.get_params()
    assert copy.get_params()["n_levels"] == 2 and copy.get_params()["random_state"] == 3
    with pytest.raises(NotFittedError):
        copy.encode(X)
    with pytest.raises(NotFittedError):
        copy.decode(np.zeros((1, 2), dtype=np.int64))


def test_unfitted_encode_raises_sklearns_error_which_is_also_a_config_error():
    q = RQKMeans(n_levels=2, codebook_size=4)
    with pytest.raises(NotFittedError, match="call fit"):
        q.encode(X)
    with pytest.raises(ConfigError):
        q.encode(X)


def test_fit_encode_defaults_to_fit_then_encode():
    q = ResidualDictionary(n_levels=2, codebook_size=4, max_samples=None)
    assert type(q).fit_encode is BaseQuantizer.fit_encode
    codes = q.fit_encode(X)
    assert np.array_equal(codes, q.encode(X))
    # rq-kmeans returns the codes its fit assigned
    km = RQKMeans(n_levels=2, codebook_size=4)
    assert np.array_equal(km.fit_encode(X), km.encode(X))


def test_rq_vae_defaults_are_the_configs():
    defaults = RQVAE().get_params()
    for name, value in VAEConfig().model_dump().items():
        expected = tuple(value) if isinstance(value, list) else value
        assert defaults[name] == expected, name
    shape = QuantizerConfig()
    assert defaults["n_levels"] == shape.levels
    assert defaults["codebook_size"] == shape.codebook_size


def test_factories_build_the_configured_params():
    cfg = QuantizerConfig(name="rq-kmeans", levels=2, codebook_size=16, kmeans={"niter": 7})
    q = make_quantizer(cfg, 5)
    assert q.get_params() == {
        "n_levels": 2,
        "codebook_size": 16,
        "backend": "faiss-kmeans",
        "niter": 7,
        "nredo": 1,
        "beam_size": 5,
        "random_state": 5,
    }


@pytest.mark.parametrize("cls", EMBEDDERS)
def test_collaborative_embedders_share_the_base(cls):
    model = cls(dim=4, epochs=3, random_state=1, progress=False)
    assert isinstance(model, CollaborativeEmbedder)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.score([0])


def test_enmf_fit_records_the_shared_facts():
    sequences = [[0, 1], [1, 2, 2], [3]]
    model = ENMF(dim=3, epochs=2, progress=False).fit(sequences, n_items=5)
    assert model.user_embeddings_.shape == (3, 3) and model.item_embeddings_.shape == (5, 3)
    assert model.n_items_without_interactions_ == 1 and model.epochs_ == 2
    assert len(model.loss_curve_) == 2 and model.seconds_ >= 0
    np.testing.assert_allclose(model.item_embeddings_, model.item_factors_ * model.h_)
    assert model.score([0, 2]).shape == (2, 5)
