"""Resume inside the generator's training: a killed stage continues from its last checkpoint
and ends with exactly the weights of an uninterrupted run; stale build folders are removed."""

import copy

import pytest
import torch
from scale_fixture import TINY, job

from semid import checkpoint
from semid.generative.config import TrainConfig
from semid.generative.model import build_model
from semid.generative.train import train_generator
from semid.runs import DONE_FILE, Run

CFG = TrainConfig(
    epochs=1000, max_steps=40, batch_size=16, lr=1e-2, warmup_ratio=0.1, precision="fp32"
)


def _stage(run: Run, cfg: TrainConfig, out: dict):
    model, examples, vocab, _ = job()

    def build(tmp):
        trained = copy.deepcopy(model)
        facts = train_generator(trained, examples, cfg, vocab.pad_id, torch.device("cpu"), 0)
        out["model"], out["facts"] = trained, facts
        (tmp / "weights.txt").write_text("ok")
        return {"steps": facts["steps"], "resumed": facts["resumed"]}

    return run.stage("model", {"k": 1}, build)


def test_killed_training_resumes_to_identical_weights(tmp_path, monkeypatch):
    plain: dict = {}
    _stage(Run(tmp_path / "a" / "run", tmp_path / "a" / "cache"), CFG, plain)

    cfg = CFG.model_copy(update={"checkpoint_steps": 10, "checkpoint_minutes": None})
    run = Run(tmp_path / "b" / "run", tmp_path / "b" / "cache")
    killed: dict = {}
    monkeypatch.setenv(checkpoint.FAIL_AFTER_ENV, "25")
    with pytest.raises(checkpoint.SimulatedKill):
        _stage(run, cfg, killed)
    folder = run.cache_dir / "model"
    ckpt = [p for p in folder.iterdir() if p.name.endswith(".ckpt")]
    assert len(ckpt) == 1
    assert [p.name for p in ckpt[0].iterdir()] == ["step-00000020"]  # older ones dropped
    monkeypatch.delenv(checkpoint.FAIL_AFTER_ENV)

    resumed: dict = {}
    result = _stage(run, cfg, resumed)
    assert resumed["facts"]["resumed"] and resumed["facts"]["steps"] == 40
    assert resumed["facts"]["loss_curve"] == plain["facts"]["loss_curve"]
    a, b = plain["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (result.path / DONE_FILE).exists()
    assert sorted(p.name for p in folder.iterdir()) == [result.key]  # no .ckpt, no .tmp left


def test_stale_tmp_folders_are_removed_when_the_stage_runs(tmp_path):
    run = Run(tmp_path / "run", tmp_path / "cache")
    key = "0123"
    stale = tmp_path / "cache" / "x" / f".{key}.abcd.tmp"
    other = tmp_path / "cache" / "x" / ".9999.abcd.tmp"  # another stage's attempt: kept
    for folder in (stale, other):
        folder.mkdir(parents=True)
        (folder / "half-written.bin").write_text("x")
    from semid.io import stable_hash

    material = {"m": 1}
    stale = stale.with_name(f".{stable_hash(material)}.abcd.tmp")
    (tmp_path / "cache" / "x" / f".{key}.abcd.tmp").rename(stale)
    run.stage("x", material, lambda tmp: {})
    assert not stale.exists() and other.exists()


def test_gradient_accumulation_matches_one_batch():
    """accelerate's accumulation: 2 micro-batches of 8 make the step of one batch of 16."""
    _, examples, vocab, _ = job()
    torch.manual_seed(0)  # no dropout: the two runs then differ by rounding only
    model = build_model(
        TINY.model_copy(update={"dropout": 0.0}), len(vocab), vocab.pad_id, vocab.eos_id
    )
    curves = []
    for accum in (1, 2):
        trained = copy.deepcopy(model)
        cfg = CFG.model_copy(
            update={"grad_accum_steps": accum, "max_steps": 1, "warmup_ratio": 0.0}
        )
        facts = train_generator(trained, examples, cfg, vocab.pad_id, torch.device("cpu"), 0)
        assert facts["grad_accum_steps"] == accum and facts["steps"] == 1
        curves.append(trained.state_dict())
    # one AdamW step moves each weight by ~lr * sign(its gradient): equal gradients (up to
    # rounding) give equal steps (a longer run would amplify the rounding through Adam)
    a, b = curves
    moved = [k for k in a if not torch.allclose(a[k], b[k], atol=1e-5)]
    assert moved == []
