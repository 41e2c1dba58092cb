"""The GPU path: no stage places a tensor on a hard-coded device; ``device=auto`` decides.

A static check over the source (no ``.cuda()``, no ``device="cpu"``/``"cuda"`` literal in a
call, no ``.to("cuda")``, no ``torch.device("cpu")``) and a runtime check: training and decoding
with ``device=auto`` under a torch function mode that records every device given to torch
from semid's own code; each must be the one ``resolve_device("auto")`` chose.
"""

import ast
import copy
import traceback
from pathlib import Path

import torch
from scale_fixture import job
from torch.overrides import TorchFunctionMode

from semid.device import resolve_device
from semid.generative.config import TrainConfig
from semid.generative.model import autocast_dtype
from semid.generative.retriever import GenerativeRetriever
from semid.generative.train import train_generator

SRC = Path(__file__).parents[1] / "src" / "semid"
DEVICES = {"cpu", "cuda"}
ALLOWED = {("costs.py", "meta")}  # parameter counting on the meta device


def hard_coded_devices(tree: ast.AST, name: str) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn, where = node.func, f"{name}:{node.lineno}"
        literal = [a.value for a in node.args[:1] if isinstance(a, ast.Constant)]
        for kw in node.keywords:
            if kw.arg == "device" and isinstance(kw.value, ast.Constant):
                literal.append(kw.value.value)
                found.append(f"{where} device={kw.value.value!r}")
        if isinstance(fn, ast.Attribute) and fn.attr == "cuda":
            found.append(f"{where} .cuda()")
        if isinstance(fn, ast.Attribute) and fn.attr in ("to", "device") and literal:
            value = str(literal[0])
            if value.split(":")[0] in DEVICES | {"meta"} and (name, value) not in ALLOWED:
                found.append(f"{where} .{fn.attr}({value!r})")
    return found


def test_no_hard_coded_device_in_the_source():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        found += hard_coded_devices(ast.parse(path.read_text()), path.name)
    assert found == [], "\n".join(found)


def test_the_static_check_catches_each_form():
    code = 'x.cuda()\ntorch.zeros(2, device="cpu")\nm.to("cuda:0")\ntorch.device("cpu")\n'
    assert len(hard_coded_devices(ast.parse(code), "t.py")) == 4


class DeviceSpy(TorchFunctionMode):
    """Records the explicit devices semid's own code passes to torch."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        device = kwargs.get("device")
        is_to = getattr(func, "__name__", "") == "to" and len(args) > 1
        if device is None and is_to and isinstance(args[1], str | torch.device):
            device = args[1]
        caller = traceback.extract_stack(limit=2)[0]  # the code that called torch
        if device is not None and "/semid/" in caller.filename:
            self.seen.append((str(torch.device(device)), f"{caller.filename}:{caller.lineno}"))
        return func(*args, **kwargs)


def test_training_and_decoding_follow_device_auto(tmp_path):
    auto = resolve_device("auto")
    model, examples, vocab, codes = job()
    model = copy.deepcopy(model)
    cfg = TrainConfig(epochs=1, batch_size=16, precision="auto", device="auto")
    spy = DeviceSpy()
    with spy:
        facts = train_generator(model, examples, cfg, vocab.pad_id, auto, seed=0)
        GenerativeRetriever(model, vocab, {"item": codes}, 16, 3).save(tmp_path)
        retriever = GenerativeRetriever.load(tmp_path, auto)
        retriever.search(["funny dark"], k=3)
        retriever.recommend([[0, 1]], k=3)
    assert spy.seen, "the spy saw no device argument"
    wrong = [(d, where) for d, where in spy.seen if torch.device(d).type != auto.type]
    assert wrong == []
    assert next(retriever.model.parameters()).device.type == auto.type
    # bf16 where the hardware has it (CUDA with bf16, AMX/AVX512-BF16 CPUs), else fp32
    expected = "bf16" if autocast_dtype("auto", auto) is not None else "fp32"
    assert facts["precision"] == expected
