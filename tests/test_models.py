"""Tests for fedrobust.models: batched functional models over flat parameters.

Every batched result is checked against an independent torch.nn twin
(`reference_module`) loaded with the same flat parameters, one worker at a time.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedrobust import models

ATOL = 1e-5


# ---------------------------------------------------------------------------
# torch.nn twins (parameter order = the flat layout)
# ---------------------------------------------------------------------------
class _ConvNorm(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)
        self.norm = nn.GroupNorm(groups, c_out)

    def forward(self, x):
        return self.norm(self.conv(x))


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.downsample = _ConvNorm(c_in, c_out, 1, stride, groups) if c_in != c_out else None

    def forward(self, x):
        out = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class _ResNet20(nn.Module):
    def __init__(self, c_in: int, num_classes: int, groups: int = 2):
        super().__init__()
        self.stem = _ConvNorm(c_in, 16, 3, 1, groups)
        c_prev = 16
        for s, c in enumerate((16, 32, 64), start=1):
            blocks = {}
            for j in range(3):
                blocks[f"block{j}"] = _Block(c_prev, c, 2 if (s > 1 and j == 0) else 1, groups)
                c_prev = c
            setattr(self, f"stage{s}", nn.ModuleDict(blocks))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        h = F.relu(self.stem(x))
        for s in (1, 2, 3):
            for block in getattr(self, f"stage{s}").values():
                h = block(h)
        return self.fc(h.mean(dim=(2, 3)))


def reference_module(model: models.BatchedModel) -> nn.Module:
    """Plain torch.nn model computing the same function for one worker."""
    shape, c = model.input_shape, model.num_classes
    if model.name == "lr":
        return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), c))
    if model.name == "dnn" and len(shape) == 1:
        f = shape[0]
        return nn.Sequential(
            nn.Unflatten(1, (1, 1, f)),
            nn.Conv2d(1, 30, 1), nn.ReLU(), nn.MaxPool2d(1, 1),
            nn.Conv2d(30, 50, 1), nn.ReLU(), nn.MaxPool2d(1, 1),
            nn.Flatten(), nn.Linear(50 * f, 200), nn.ReLU(), nn.Linear(200, c),
        )
    if model.name == "dnn":
        c_in, h, w = shape
        out = lambda s: ((s - 2) // 2 - 2) // 2  # noqa: E731
        return nn.Sequential(
            nn.Conv2d(c_in, 30, 3), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(30, 50, 3), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Flatten(), nn.Linear(50 * out(h) * out(w), 200), nn.ReLU(), nn.Linear(200, c),
        )
    if model.name == "resnet20":
        return _ResNet20(shape[0], c)
    raise AssertionError(model.name)


def loaded_reference(model: models.BatchedModel, flat: torch.Tensor) -> nn.Module:
    ref = reference_module(model)
    assert sum(p.numel() for p in ref.parameters()) == model.d
    nn.utils.vector_to_parameters(flat.detach().clone(), ref.parameters())
    return ref


# ---------------------------------------------------------------------------
# Fixtures / data
# ---------------------------------------------------------------------------
TINY_CASES = [
    ("lr", (1, 4, 4), 3),
    ("lr", (7,), 2),
    ("dnn", (1, 10, 10), 3),
    ("dnn", (2, 11, 12), 4),
    ("dnn", (5,), 2),
    ("resnet20", (1, 8, 8), 8),
]
CASE_IDS = [f"{n}-{'x'.join(map(str, s))}-{c}" for n, s, c in TINY_CASES]


def random_params(model: models.BatchedModel, m: int, seed: int = 0) -> torch.Tensor:
    """m distinct parameter rows: init + noise (biases and norm params become non-trivial)."""
    base = model.init(np.random.default_rng(seed))
    gen = torch.Generator().manual_seed(seed)
    return base + 0.05 * torch.randn(m, model.d, generator=gen)


def random_batch(model: models.BatchedModel, m: int, b: int, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(m, b, *model.input_shape, generator=gen)
    y = torch.randint(0, model.num_classes, (m, b), generator=gen)
    return x, y


# ---------------------------------------------------------------------------
# Parameter counts and layout
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, shape, classes, d",
    [
        ("lr", (1, 28, 28), 10, 7_850),  # 784*10 + 10
        ("dnn", (1, 28, 28), 10, 266_060),  # 300 + 13,550 + 250,200 + 2,010
        ("dnn", (30,), 2, 302_212),  # 1x30 "image", 1x1 kernels: 60 + 1,550 + 300,200 + 402
        ("resnet20", (1, 64, 64), 8, 272_056),
        ("resnet20", (1, 8, 8), 8, 272_056),
    ],
)
def test_parameter_count(name, shape, classes, d):
    model = models.get(name, shape, classes)
    assert model.d == d
    assert (model.name, model.input_shape, model.num_classes) == (name, shape, classes)
    assert model.init(np.random.default_rng(0)).shape == (d,)


@pytest.mark.parametrize("name, shape, classes", TINY_CASES + [("dnn", (1, 28, 28), 10)], ids=CASE_IDS + ["dnn-mnist"])
def test_layout_matches_torch_parameter_order(name, shape, classes):
    model = models.get(name, shape, classes)
    ref = reference_module(model)
    assert [s.shape for s in model.layout] == [tuple(p.shape) for p in ref.parameters()]
    if name == "resnet20":
        assert [s.name for s in model.layout] == [n for n, _ in ref.named_parameters()]
    # the flat vector is parameters_to_vector of the twin
    flat = random_params(model, 1)[0]
    ref2 = loaded_reference(model, flat)
    assert torch.equal(nn.utils.parameters_to_vector(ref2.parameters()), flat)


def test_unflatten_views_and_order():
    model = models.get("dnn", (1, 10, 10), 3)
    params = random_params(model, 2)
    parts = model.unflatten(params)
    assert list(parts) == [s.name for s in model.layout]
    offset = 0
    for spec in model.layout:
        part = parts[spec.name]
        assert part.shape == (2, *spec.shape)
        assert part.data_ptr() == params[:, offset:].data_ptr()  # a view, no copy
        assert torch.equal(part.reshape(2, -1), params[:, offset : offset + spec.numel])
        offset += spec.numel
    assert offset == model.d
    with pytest.raises(ValueError, match="shape"):
        models.unflatten(params[:, :-1], model.layout)


# ---------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, shape, classes", TINY_CASES, ids=CASE_IDS)
def test_forward_matches_loop_and_torch_reference(name, shape, classes):
    model = models.get(name, shape, classes)
    m, b = 3, 5
    params = random_params(model, m)
    x, _ = random_batch(model, m, b)
    logits = model.forward(params, x)
    assert logits.shape == (m, b, classes)
    for i in range(m):
        single = model.forward(params[i : i + 1], x[i : i + 1])
        torch.testing.assert_close(single[0], logits[i], atol=ATOL, rtol=ATOL)
        with torch.no_grad():
            expected = loaded_reference(model, params[i])(x[i])
        torch.testing.assert_close(logits[i], expected, atol=ATOL, rtol=ATOL)


def test_forward_rejects_bad_shapes():
    model = models.get("lr", (1, 4, 4), 3)
    params = random_params(model, 2)
    with pytest.raises(ValueError, match="x must have shape"):
        model.forward(params, torch.zeros(2, 5, 16))
    with pytest.raises(ValueError, match="workers"):
        model.forward(params, torch.zeros(3, 5, 1, 4, 4))
    with pytest.raises(ValueError, match="params must have shape"):
        model.forward(params[:, 1:], torch.zeros(2, 5, 1, 4, 4))


# ---------------------------------------------------------------------------
# Loss and gradient
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, shape, classes", TINY_CASES, ids=CASE_IDS)
def test_loss_and_grad_match_per_worker_autograd(name, shape, classes):
    """Worker i uses only its first n_i rows; the rest are zero-weight padding
    filled with garbage, which must change neither loss nor gradient."""
    model = models.get(name, shape, classes)
    m, b = 3, 6
    n_real = [6, 4, 1]
    params = random_params(model, m)
    x, y = random_batch(model, m, b)
    weight = torch.zeros(m, b)
    for i, n in enumerate(n_real):
        weight[i, :n] = 1.0
        x[i, n:] = 1e3 * torch.randn_like(x[i, n:])  # padding garbage
        y[i, n:] = classes - 1
    loss, grad = model.loss_and_grad(params, x, y, weight)
    assert loss.shape == (m,) and grad.shape == (m, model.d)
    assert not loss.requires_grad and not grad.requires_grad

    for i, n in enumerate(n_real):
        ref = loaded_reference(model, params[i])
        ref_loss = F.cross_entropy(ref(x[i, :n]), y[i, :n])
        ref_loss.backward()
        ref_grad = torch.cat([p.grad.reshape(-1) for p in ref.parameters()])
        torch.testing.assert_close(loss[i], ref_loss.detach(), atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(grad[i], ref_grad, atol=ATOL, rtol=1e-4)


def test_weighted_loss_formula_and_all_zero_weights():
    model = models.get("lr", (4,), 3)
    params = random_params(model, 2)
    x, y = random_batch(model, 2, 4)
    weight = torch.tensor([[0.5, 2.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    loss, grad = model.loss_and_grad(params, x, y, weight)
    ce = F.cross_entropy(model.forward(params, x)[0], y[0], reduction="none")
    torch.testing.assert_close(loss[0], (weight[0] * ce).sum() / weight[0].sum())
    assert loss[1] == 0 and torch.all(grad[1] == 0)  # empty worker: 0 / max(0, 1e-12)


def test_loss_and_grad_rejects_bad_label_shape():
    model = models.get("lr", (4,), 3)
    params = random_params(model, 2)
    x, y = random_batch(model, 2, 4)
    with pytest.raises(ValueError, match="y and weight"):
        model.loss_and_grad(params, x, y[:, :3], torch.ones(2, 4))


# ---------------------------------------------------------------------------
# Initialization
# ---------------------------------------------------------------------------
def test_init_is_deterministic():
    model = models.get("dnn", (1, 10, 10), 3)
    a = model.init(np.random.default_rng(7))
    b = model.init(np.random.default_rng(7))
    c = model.init(np.random.default_rng(8))
    assert a.dtype == torch.float32 and a.shape == (model.d,)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("magnitude, factor", [(3.0, 1.0), (1.0, 1.0 / math.sqrt(3.0))])
def test_init_is_xavier_uniform(magnitude, factor):
    model = models.get("dnn", (1, 28, 28), 10, init_magnitude=magnitude)
    parts = model.unflatten(model.init(np.random.default_rng(0)).unsqueeze(0))
    for name, fan_in, fan_out in [("fc1.weight", 1250, 200), ("conv2.weight", 30 * 9, 50 * 9)]:
        w = parts[name]
        std = math.sqrt(2.0 / (fan_in + fan_out)) * factor
        bound = math.sqrt(3.0) * std
        assert abs(float(w.std()) / std - 1.0) < 0.02
        assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.99 * bound
    for name in ("conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"):
        assert torch.all(parts[name] == 0)


def test_resnet_norm_init():
    model = models.get("resnet20", (1, 8, 8), 8)
    parts = model.unflatten(model.init(np.random.default_rng(0)).unsqueeze(0))
    for spec in model.layout:
        if ".norm" in spec.name:
            expected = 1.0 if spec.name.endswith("weight") else 0.0
            assert torch.all(parts[spec.name] == expected), spec.name


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, shape, classes", [TINY_CASES[0], TINY_CASES[2], TINY_CASES[4]],
                         ids=["lr", "dnn", "dnn-vec"])
def test_evaluate_matches_manual(name, shape, classes):
    model = models.get(name, shape, classes)
    params = random_params(model, 1)[0]
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(23, *shape, generator=gen)
    y = torch.randint(0, classes, (23,), generator=gen)
    with torch.no_grad():
        logits = loaded_reference(model, params)(x)
    expected_err = int((logits.argmax(1) != y).sum()) / len(y)
    expected_loss = float(F.cross_entropy(logits, y))
    for batch_size in (2048, 7, 1):
        err, loss = model.evaluate(params, x, y, batch_size=batch_size)
        assert 0.0 <= err <= 1.0
        assert err == pytest.approx(expected_err, abs=1e-12)
        assert loss == pytest.approx(expected_loss, rel=1e-5)
    with pytest.raises(ValueError, match="params must have shape"):
        model.evaluate(params.unsqueeze(0), x, y)


# ---------------------------------------------------------------------------
# Training sanity and scale
# ---------------------------------------------------------------------------
def test_sgd_reduces_every_workers_loss():
    """Each worker has its own linearly separable 2-class problem."""
    model = models.get("lr", (2,), 2)
    m, b = 4, 32
    gen = torch.Generator().manual_seed(0)
    directions = torch.randn(m, 1, 2, generator=gen)
    x = torch.randn(m, b, 2, generator=gen)
    y = ((x * directions).sum(-1) > 0).long()
    weight = torch.ones(m, b)
    params = model.init(np.random.default_rng(0)).repeat(m, 1)
    first, _ = model.loss_and_grad(params, x, y, weight)
    for _ in range(50):
        loss, grad = model.loss_and_grad(params, x, y, weight)
        params = params - 0.5 * grad
    last, _ = model.loss_and_grad(params, x, y, weight)
    assert torch.all(last < 0.5 * first), (first, last)
    err = [model.evaluate(params[i], x[i], y[i])[0] for i in range(m)]
    assert max(err) <= 0.1


@pytest.mark.parametrize("m, per_chunk, count", [(1, 4, 1), (2, 1, 2), (3, 1, 3), (3, 2, 1), (10, 4, 3),
                                                  (100, 6, 17), (7, 100, 1), (5, 2, 2), (5, 3, 2)])
def test_worker_chunks_cover_the_rows_in_near_equal_slices(m, per_chunk, count):
    chunks = models.worker_chunks(m, per_chunk)
    assert chunks[0].start == 0 and chunks[-1].stop == m
    assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:]))
    lengths = [c.stop - c.start for c in chunks]
    assert max(lengths) - min(lengths) <= 1 and (per_chunk == 1 or m < 2 or min(lengths) >= 2)
    assert sum(lengths) == m and len(chunks) == count


@pytest.mark.parametrize("name, shape, classes", [("dnn", (1, 12, 12), 3), ("resnet20", (1, 6, 6), 4)])
def test_cpu_chunks_give_one_batched_pass_results(name, shape, classes, monkeypatch):
    """sgd_step on the CPU cuts the workers into chunks (cpu_workers_per_chunk); the
    updates equal those of one pass over all workers, for a first and a second step."""
    model = models.get(name, shape, classes)
    rng = np.random.default_rng(4)
    m, b, n = 7, 5, 60
    x_all = torch.from_numpy(rng.standard_normal((n, *shape), dtype=np.float32))
    y_all = torch.from_numpy(rng.integers(0, classes, n))
    w = model.init(rng)
    batches = rng.integers(-1, n, (m, b))
    monkeypatch.setattr(model, "cpu_workers_per_chunk", lambda batch: m)
    whole = model.sgd_step(w, None, x_all, y_all, batches, 0.1)
    whole2 = model.sgd_step(w, whole.clone(), x_all, y_all, batches, 0.1)
    for per_chunk, count in ((2, 3), (1, 7)):  # pairs and a triple (grouped convs), single workers (plain convs)
        monkeypatch.setattr(model, "cpu_workers_per_chunk", lambda batch, k=per_chunk: k)
        assert len(models.worker_chunks(m, per_chunk)) == count
        chunked = model.sgd_step(w, None, x_all, y_all, batches, 0.1)
        U = chunked.clone()
        chunked2 = model.sgd_step(w, U, x_all, y_all, batches, 0.1)
        assert chunked2 is U  # updated in place
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)  # plain and grouped convs round apart
        torch.testing.assert_close(chunked2, whole2, rtol=1e-5, atol=1e-6)


def test_activation_values_are_the_largest_layer():
    assert models.get("dnn", (1, 28, 28), 10).activation_values() == 30 * 26 * 26
    assert models.get("dnn", (30,), 2).activation_values() == 30 * 30
    assert models.get("resnet20", (1, 64, 64), 8).activation_values() == 16 * 64 * 64
    assert models.get("lr", (1, 28, 28), 10).activation_values() == 784
    # MNIST's DNN at batch 32: 2.6 MB per worker, 6 workers to a 16 MiB chunk; 1 at batch 256.
    assert models.get("dnn", (1, 28, 28), 10).cpu_workers_per_chunk(32) == 6
    assert models.get("dnn", (1, 28, 28), 10).cpu_workers_per_chunk(256) == 1
    assert models.get("resnet20", (1, 8, 8), 8).cpu_workers_per_chunk(32) == 1  # plain convs measured faster


def test_scale_lr_mnist_1000_workers():
    model = models.get("lr", (1, 28, 28), 10)
    m, b = 1000, 32
    params = model.init(np.random.default_rng(0)).repeat(m, 1)
    x = torch.rand(m, b, 1, 28, 28)
    y = torch.randint(0, 10, (m, b))
    loss, grad = model.loss_and_grad(params, x, y, torch.ones(m, b))
    assert loss.shape == (m,) and grad.shape == (m, 7850)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="lr, dnn, resnet20"):
        models.get("vgg", (1, 28, 28), 10)


@pytest.mark.parametrize(
    "name, shape, match",
    [
        ("dnn", (1, 8, 8), "H, W >= 10"),  # 8 -> 6 -> 3 -> 1 -> 0
        ("dnn", (1, 28, 9), "width"),
        ("dnn", (28, 28), r"\(F,\) or an image"),
        ("resnet20", (30,), "image"),
        ("lr", (), "non-empty"),
        ("lr", (0, 3), "positive"),
    ],
)
def test_bad_input_shapes(name, shape, match):
    with pytest.raises(ValueError, match=match):
        models.get(name, shape, 10)


def test_dnn_minimum_image_size():
    assert models.get("dnn", (1, 10, 10), 10).layout[4].shape == (200, 50)  # 10 -> 8 -> 4 -> 2 -> 1
