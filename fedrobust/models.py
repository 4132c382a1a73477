"""Batched functional models: all m workers' models trained in one forward/backward.

A model here is a pure function of a FLAT parameter vector. The parameters of
m workers form one (m, d) tensor; `forward` evaluates every worker's model on
that worker's own batch with batched kernels (torch.baddbmm for dense layers,
grouped convolution for conv layers), never with a Python loop over workers.

Models (`get(name, input_shape, num_classes)`):

* ``"lr"``       multi-class logistic regression on the flattened input
                 (SPEC 8.2); d = F*C + C (MNIST: 784*10 + 10 = 7,850).
* ``"dnn"``      the paper's DNN (Table 7a; FLAIR ``dnn10`` / ``dnn2``):
                 Conv k x k x 30 + ReLU, MaxPool, Conv k x k x 50 + ReLU,
                 MaxPool, Dense 200 + ReLU, Dense C. No padding, pool stride
                 = pool size. Image input (C, H, W): k = 3, pool 2x2.
                 Feature-vector input (F,): the FLAIR ``dnn2`` reading, see
                 `PaperDNN`. MNIST: d = 266,060; breast cancer: d = 302,212.
* ``"resnet20"`` CIFAR ResNet20 v1 (gluoncv ``cifar_resnet20_v1``) with
                 GroupNorm in place of BatchNorm, see `ResNet20`.

Flat parameter layout
---------------------
Each model has a `layout`: an ordered list of `ParamSpec(name, shape, init)`.
The flat vector is the concatenation, in layout order, of each tensor
flattened in C order. Weight shapes follow torch.nn conventions (Linear:
(out, in); Conv2d: (out, in, k, k)) and the order is the order of
``torch_module.parameters()`` of the equivalent torch.nn model, so
``torch.nn.utils.parameters_to_vector(ref.parameters())`` gives exactly our
flat vector (the tests check this). `unflatten(params, layout)` returns
per-tensor views of shape (m, *shape).

Initialization
--------------
Xavier / Glorot uniform on weights, zeros on biases, ones on norm scales:
W ~ U(-a, a), a = sqrt(magnitude * 2 / (fan_in + fan_out)), with
fan_in = in * k * k and fan_out = out * k * k (MXNet ``Xavier('uniform',
'avg', magnitude)``). The default magnitude 3 is the standard Glorot /
torch.nn.init.xavier_uniform_ bound sqrt(6 / (fan_in + fan_out)), i.e.
std = sqrt(2 / (fan_in + fan_out)). The FLAIR reference uses
``Xavier(magnitude=1)`` for LR and dnn10 (std smaller by sqrt(3)) and the
default magnitude 3 for dnn2 and resnet20; pass ``init_magnitude=1.0`` to
`get` to reproduce the former.

Loss
----
Per-worker weighted mean cross-entropy
    loss_i = sum_b w_ib * CE(logits_ib, y_ib) / max(sum_b w_ib, 1e-12),
so a worker with fewer than B examples pads its batch with zero-weight rows.

Convolution layout choice (CPU)
-------------------------------
Conv activations are kept "channel-stacked": (B, m*C, H, W), worker i owning
channels [i*C, (i+1)*C), stored channels_last. A conv is then one F.conv2d
with groups=m and the weights reshaped to (m*C_out, C_in, k, k); pooling,
ReLU and GroupNorm act on that layout directly. Measured on 2 CPU threads,
forward + weight gradient of the DNN's convs at m = 100, B = 32 (MNIST):
grouped NCHW 811 / 450 ms (conv1 / conv2), grouped channels_last 638 / 419,
torch.func.vmap (which lowers to the same grouped conv) 666 / 455,
im2col (F.unfold + bmm) 603 / 913. Grouped channels_last is the best overall;
the whole DNN loss_and_grad went 1.49 s (NCHW) -> 0.91 s (channels_last).
Dense layers use torch.baddbmm (`batched_linear`).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fedrobust import aggregators
from fedrobust._native import cpu

__all__ = [
    "ParamSpec",
    "BatchedModel",
    "LogisticRegression",
    "PaperDNN",
    "ResNet20",
    "MODELS",
    "get",
    "unflatten",
    "weighted_cross_entropy",
]

DEFAULT_INIT_MAGNITUDE = 3.0


# ---------------------------------------------------------------------------
# Parameter layout
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ParamSpec:
    """One parameter tensor of a model.

    name:  dotted name, e.g. "conv1.weight".
    shape: tensor shape for ONE worker, torch.nn convention.
    init:  "xavier" (weights), "zeros" (biases, norm shifts) or "ones" (norm scales).
    """

    name: str
    shape: Tuple[int, ...]
    init: str

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def layout_size(layout: Sequence[ParamSpec]) -> int:
    """d = total number of scalars in the layout."""
    return sum(spec.numel for spec in layout)


def unflatten(params: Tensor, layout: Sequence[ParamSpec]) -> Dict[str, Tensor]:
    """Split flat parameters (m, d) into named views of shape (m, *spec.shape).

    The tensors appear in `layout` order and are consecutive, C-order blocks
    of each row. One `torch.split` is used so that the backward pass is a
    single concatenation, not one (m, d) scatter per parameter tensor.
    """
    if params.dim() != 2 or params.shape[1] != layout_size(layout):
        raise ValueError(
            f"params must have shape (m, {layout_size(layout)}), got {tuple(params.shape)}"
        )
    m = params.shape[0]
    chunks = torch.split(params, [spec.numel for spec in layout], dim=1)
    return {spec.name: chunk.view(m, *spec.shape) for spec, chunk in zip(layout, chunks)}


def xavier_bound(shape: Tuple[int, ...], magnitude: float) -> float:
    """a = sqrt(magnitude * 2 / (fan_in + fan_out)) for a weight of `shape` (out, in, *kernel)."""
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    fan_out, fan_in = shape[0] * receptive, shape[1] * receptive
    return math.sqrt(magnitude * 2.0 / (fan_in + fan_out))


def init_layout(layout: Sequence[ParamSpec], rng: np.random.Generator, magnitude: float) -> Tensor:
    """Flat (d,) float32 initial parameters: Xavier-uniform weights, zeros, ones (see module doc).

    Draws come from `rng` in layout order, so the result is a function of the
    generator state only.
    """
    pieces: List[np.ndarray] = []
    for spec in layout:
        if spec.init == "xavier":
            a = xavier_bound(spec.shape, magnitude)
            pieces.append(rng.uniform(-a, a, size=spec.numel))
        elif spec.init == "zeros":
            pieces.append(np.zeros(spec.numel))
        elif spec.init == "ones":
            pieces.append(np.ones(spec.numel))
        else:  # pragma: no cover - layouts are built in this module
            raise ValueError(f"unknown init {spec.init!r} for {spec.name}")
    return torch.from_numpy(np.concatenate(pieces).astype(np.float32))


# ---------------------------------------------------------------------------
# Batched building blocks
# ---------------------------------------------------------------------------
def _argmax_last(logits: Tensor) -> Tensor:
    """argmax over the last dimension (the first largest class). The dense layers' logits are
    transposed views (batched_linear), whose strided last dimension makes torch's argmax 7x
    slower than a contiguous copy and an argmax of it (same values, so the same classes)."""
    return logits.contiguous().argmax(dim=-1)


def batched_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Per-worker dense layer: out[i] = x[i] @ weight[i].T + bias[i].

    x (m, B, in), weight (m, out, in), bias (m, out) -> (m, B, out).
    Computed as (weight[i] @ x[i].T + bias[i]).T so that the backward product
    for the weight comes out in the (out, in) layout of the flat parameters
    (no transposing copy; 2x faster than x @ weight.T for LR at m = 10,000).
    The result is a transposed (non-contiguous) view.
    """
    return torch.baddbmm(bias.unsqueeze(2), weight, x.transpose(1, 2)).transpose(1, 2)


def to_channel_stacked(x: Tensor) -> Tensor:
    """(m, B, C, H, W) -> (B, m*C, H, W): worker i owns channels [i*C, (i+1)*C).

    The result is stored channels_last (NHWC), see `batched_conv2d`.
    """
    m, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, m * c, h, w).contiguous(memory_format=torch.channels_last)


def from_channel_stacked(h: Tensor, m: int) -> Tensor:
    """(B, m*C, H, W) -> (m, B, C*H*W), each row flattened in (C, H, W) order like nn.Flatten.

    (Copies when h is channels_last.)
    """
    b = h.shape[0]
    return h.reshape(b, m, -1).transpose(0, 1)


def batched_conv2d(
    h: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int = 1, padding: int = 0
) -> Tensor:
    """Per-worker conv as one grouped conv.

    h (B, m*C_in, H, W), weight (m, C_out, C_in, k, k), bias (m, C_out) or None
    -> (B, m*C_out, H', W'), H' = floor((H + 2*padding - k) / stride) + 1.
    Input and weight are channels_last: on CPU (oneDNN) this made the DNN's
    loss_and_grad 1.5x faster than NCHW at m = 100 (pooling, ReLU, GroupNorm
    keep the format).
    """
    m, c_out = weight.shape[:2]
    w = weight.reshape(m * c_out, *weight.shape[2:]).contiguous(memory_format=torch.channels_last)
    b = None if bias is None else bias.reshape(m * c_out)
    return F.conv2d(h, w, b, stride=stride, padding=padding, groups=m)


def batched_group_norm(h: Tensor, scale: Tensor, shift: Tensor, groups: int, eps: float = 1e-5) -> Tensor:
    """Per-worker GroupNorm with `groups` groups per worker.

    h (B, m*C, H, W), scale/shift (m, C) -> same shape as h. Worker i's C channels
    are contiguous and C % groups == 0, so m*groups groups over m*C channels never
    mix workers. Statistics are per example, so zero-weight padding rows do not
    affect the other rows.
    """
    m = scale.shape[0]
    return F.group_norm(h, m * groups, scale.reshape(-1), shift.reshape(-1), eps)


def weighted_cross_entropy(logits: Tensor, y: Tensor, weight: Tensor) -> Tensor:
    """Per-worker weighted mean CE.

    logits (m, B, C), y (m, B) int64, weight (m, B) ->
    loss (m,) = sum_b weight*ce / max(sum_b weight, 1e-12).
    """
    m, b, c = logits.shape
    ce = F.cross_entropy(logits.reshape(m * b, c), y.reshape(m * b).long(), reduction="none").view(m, b)
    return (weight * ce).sum(dim=1) / weight.sum(dim=1).clamp_min(1e-12)


def worker_chunks(m: int, per_chunk: int) -> List[slice]:
    """Rows 0 .. m cut into ceil(m / per_chunk) consecutive slices of near-equal sizes. With
    per_chunk >= 2 none is a single row (a group of one runs as a plain conv, whose kernel
    may round differently from the grouped one's); per_chunk 1 gives every row its own."""
    n = -(-m // max(per_chunk, 1))
    if per_chunk >= 2:
        n = max(1, min(n, m // 2))
    bounds = [k * m // n for k in range(n + 1)]
    return [slice(bounds[k], bounds[k + 1]) for k in range(n)]


# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------
class BatchedModel:
    """A functional classifier over flat parameters, batched over workers.

    Attributes: name, input_shape (one example, without batch dims),
    num_classes, layout (list of ParamSpec), d (number of parameters),
    init_magnitude (Xavier magnitude, see module doc).

    Subclasses implement `_logits(p, x)` with p = unflatten(params, layout).
    """

    def __init__(
        self,
        name: str,
        input_shape: Tuple[int, ...],
        num_classes: int,
        layout: List[ParamSpec],
        init_magnitude: float = DEFAULT_INIT_MAGNITUDE,
    ) -> None:
        self.name = name
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.layout = layout
        self.d = layout_size(layout)
        self.init_magnitude = float(init_magnitude)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, d={self.d})"
        )

    # -- parameters ---------------------------------------------------------
    def init(self, rng: np.random.Generator) -> Tensor:
        """Initial flat parameters (d,) float32; deterministic given the rng state."""
        return init_layout(self.layout, rng, self.init_magnitude)

    def unflatten(self, params: Tensor) -> Dict[str, Tensor]:
        """params (m, d) -> {name: (m, *shape)} views, see module-level `unflatten`."""
        return unflatten(params, self.layout)

    # -- forward / loss -----------------------------------------------------
    def forward(self, params: Tensor, x: Tensor) -> Tensor:
        """Logits of every worker's model on its own batch.

        params (m, d), x (m, B, *input_shape) -> logits (m, B, num_classes).
        """
        self._check_inputs(params, x)
        return self._logits(self.unflatten(params), x)

    def loss_and_grad(self, params: Tensor, x: Tensor, y: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-worker weighted CE and its gradient w.r.t. that worker's parameters.

        params (m, d), x (m, B, *input_shape), y (m, B) int64, weight (m, B) float32
        -> loss (m,), grad (m, d), both detached.
        Workers share nothing, so d(sum_i loss_i)/d params[i] = d loss_i / d params[i]:
        one backward of the summed loss yields all per-worker gradients.
        """
        if y.shape != x.shape[:2] or weight.shape != x.shape[:2]:
            raise ValueError(
                f"y and weight must have shape {tuple(x.shape[:2])}, got {tuple(y.shape)} and {tuple(weight.shape)}"
            )
        with torch.enable_grad():
            p = params.detach().requires_grad_(True)
            loss = weighted_cross_entropy(self.forward(p, x), y, weight)
            (grad,) = torch.autograd.grad(loss.sum(), p)
        return loss.detach(), grad

    def sgd_step(self, w: Tensor, U: Optional[Tensor], x_all: Tensor, y_all: Tensor, batches: np.ndarray,
                 lr: float, nonfinite: Optional[np.ndarray] = None) -> Tensor:
        """One local SGD step for every worker, accumulated into the updates.

        w (d,) the global model; U (m, d) the updates so far, None before the first
        step (worker i's model is w + U_i, or w); x_all (N, *input_shape), y_all (N,)
        the training set; batches (m, B) int64 indices into it, -1 = empty slot.
        Returns U_i - lr * grad_i (U updated in place when given), grad_i the gradient
        of worker i's batch-mean cross-entropy at its model; a worker with an empty
        batch has grad_i = 0. With `nonfinite` ((m,) bool), also sets nonfinite[i] to
        whether row i of the result holds a NaN or an Inf.
        """
        out = self._batched_sgd_step(w, U, x_all, y_all, batches, lr)
        if nonfinite is not None:
            nonfinite[:] = aggregators.nonfinite_rows(out)
        return out

    def _batched_sgd_step(self, w: Tensor, U: Optional[Tensor], x_all: Tensor, y_all: Tensor,
                          batches: np.ndarray, lr: float) -> Tensor:
        """sgd_step's updates, in chunks of workers on the CPU (cpu_workers_per_chunk)."""
        m, b = batches.shape
        if x_all.device.type == "cpu":
            chunks = worker_chunks(m, self.cpu_workers_per_chunk(b))
            if len(chunks) > 1:
                out = torch.empty(m, self.d, dtype=w.dtype) if U is None else U
                for rows in chunks:
                    part = self._batched_sgd_step(w, None if U is None else U[rows], x_all, y_all, batches[rows], lr)
                    if U is None:
                        out[rows] = part
                return out
        valid = batches >= 0
        idx = torch.from_numpy(np.where(valid, batches, 0).ravel()).to(x_all.device)
        x = torch.index_select(x_all, 0, idx).view(m, b, *x_all.shape[1:])
        y = torch.index_select(y_all, 0, idx).view(m, b)
        params = w.expand(m, -1) if U is None else w + U
        weight = torch.from_numpy(valid.astype(np.float32)).to(x_all.device)
        _, grad = self.loss_and_grad(params, x, y, weight)
        return grad.mul_(-lr) if U is None else U.sub_(grad, alpha=lr)

    # Bytes of the largest activation a chunk of workers may hold on the CPU (see
    # cpu_workers_per_chunk). Measured on the DNN (2.6 MB per worker on MNIST): chunks of 4
    # to 8 workers were 2x faster than all 100 at once, whose activations stream through
    # memory. ResNet20 runs one worker at a time (its cpu_workers_per_chunk).
    CPU_CHUNK_BYTES = 16 * 2**20

    def activation_values(self) -> int:
        """Values of the largest layer output for one example (the input for models without
        a larger one)."""
        return max(int(np.prod(self.input_shape)), self.num_classes)

    def cpu_workers_per_chunk(self, batch: int) -> int:
        """Workers whose sgd_step runs as one batched pass on the CPU: as many as keep the
        largest activation (activation_values per example, `batch` examples per worker,
        4 bytes per value) within CPU_CHUNK_BYTES, at least 1."""
        return max(1, self.CPU_CHUNK_BYTES // (4 * max(batch, 1) * self.activation_values()))

    @torch.no_grad()
    def evaluate(self, params: Tensor, x: Tensor, y: Tensor, batch_size: int = 2048) -> Tuple[float, float]:
        """Error rate and mean CE of ONE model on a data set.

        params (d,), x (n, *input_shape), y (n,) int -> (error_rate in [0, 1], mean_loss).
        Evaluated in chunks of `batch_size` examples.
        """
        if params.shape != (self.d,):
            raise ValueError(f"params must have shape ({self.d},), got {tuple(params.shape)}")
        n = x.shape[0]
        if n == 0:
            raise ValueError("evaluate needs at least one example")
        errors, loss_sum = 0, 0.0
        for start in range(0, n, batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            logits = self.forward(params.unsqueeze(0), xb.unsqueeze(0))[0]
            errors += int((_argmax_last(logits) != yb).sum())
            loss_sum += float(F.cross_entropy(logits, yb.long(), reduction="sum"))
        return errors / n, loss_sum / n

    @torch.no_grad()
    def evaluate_many(self, params: Tensor, x: Tensor, y: Tensor,
                      batch_size: int = 256) -> Tuple[np.ndarray, np.ndarray]:
        """Error rates and mean CEs of k models on one data set, in one batched forward per chunk.

        params (k, d), x (n, *input_shape), y (n,) int -> (errors (k,), losses (k,)) float64.
        Each model sees the same examples (x is broadcast, not copied per model); chunks of
        `batch_size` examples.
        """
        if params.dim() != 2 or params.shape[1] != self.d:
            raise ValueError(f"params must have shape (k, {self.d}), got {tuple(params.shape)}")
        n, k = x.shape[0], params.shape[0]
        if n == 0:
            raise ValueError("evaluate_many needs at least one example")
        errors = torch.zeros(k, dtype=torch.float64, device=params.device)
        losses = torch.zeros(k, dtype=torch.float64, device=params.device)
        for start in range(0, n, batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size].long()
            logits = self.forward(params, xb.unsqueeze(0).expand(k, *xb.shape))  # (k, b, classes)
            errors += (_argmax_last(logits) != yb).sum(dim=1).double()
            per_example = F.cross_entropy(logits.transpose(1, 2), yb.expand(k, -1), reduction="none")
            losses += per_example.double().sum(dim=1)
        return (errors / n).cpu().numpy(), (losses / n).cpu().numpy()

    # -- internals ----------------------------------------------------------
    def _check_inputs(self, params: Tensor, x: Tensor) -> None:
        if params.dim() != 2 or params.shape[1] != self.d:
            raise ValueError(f"params must have shape (m, {self.d}), got {tuple(params.shape)}")
        if x.dim() != 2 + len(self.input_shape) or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"x must have shape (m, B, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        if x.shape[0] != params.shape[0]:
            raise ValueError(f"params has {params.shape[0]} workers but x has {x.shape[0]}")

    def _logits(self, p: Dict[str, Tensor], x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------------------
# Logistic regression
# ---------------------------------------------------------------------------
class LogisticRegression(BatchedModel):
    """Multi-class LR on the flattened input: logits = W x + b.

    Layout: fc.weight (C, F), fc.bias (C,); F = prod(input_shape); d = F*C + C.
    torch.nn twin: Sequential(Flatten(), Linear(F, C)).
    """

    def __init__(self, input_shape: Tuple[int, ...], num_classes: int, init_magnitude: float = DEFAULT_INIT_MAGNITUDE):
        features = int(np.prod(input_shape, dtype=np.int64))
        layout = [
            ParamSpec("fc.weight", (num_classes, features), "xavier"),
            ParamSpec("fc.bias", (num_classes,), "zeros"),
        ]
        super().__init__("lr", input_shape, num_classes, layout, init_magnitude)
        self.features = features
        self._last_first_step: Optional[np.ndarray] = None  # see sgd_step

    def _logits(self, p: Dict[str, Tensor], x: Tensor) -> Tensor:
        m, b = x.shape[:2]
        return batched_linear(x.reshape(m, b, self.features), p["fc.weight"], p["fc.bias"])

    def sgd_step(self, w: Tensor, U: Optional[Tensor], x_all: Tensor, y_all: Tensor, batches: np.ndarray,
                 lr: float, nonfinite: Optional[np.ndarray] = None) -> Tensor:
        """BatchedModel.sgd_step by the native kernel (csrc/cpu/training.cpp) for CPU
        tensors: it reads each worker's examples in place and writes U directly, with no
        gathered batch and no (m, d) gradient, and flags non-finite rows (`nonfinite`) as it
        writes them, with no pass over U of their own. Other devices take the autograd path.

        A first step (U None) writes into the array the previous first step returned when
        nothing refers to it any more (the simulation drops each round's U): rewriting it
        costs less than mapping in a new one (300 MB at m = 10,000 on MNIST). The model
        keeps that array until its next first step.
        """
        if w.device.type != "cpu" or x_all.dtype != w.dtype:
            return super().sgd_step(w, U, x_all, y_all, batches, lr, nonfinite)
        X = x_all.reshape(x_all.shape[0], self.features).numpy()
        batches = np.ascontiguousarray(batches, dtype=np.int64)
        if U is not None:
            cpu.lr_sgd_step(w.numpy(), X, y_all.numpy(), batches, self.num_classes, lr, U.numpy(),
                            nonfinite=nonfinite)
            return U
        last = self._last_first_step
        self._last_first_step = None  # gives it up unless the kernel writes it again
        # 2 references: `last` and getrefcount's argument; any more is someone else's.
        free = last is not None and last.shape == (batches.shape[0], self.d) and last.dtype == X.dtype and \
            sys.getrefcount(last) == 2
        self._last_first_step = cpu.lr_sgd_step(w.numpy(), X, y_all.numpy(), batches, self.num_classes, lr,
                                                out=last if free else None, nonfinite=nonfinite)
        return torch.from_numpy(self._last_first_step)


# ---------------------------------------------------------------------------
# The paper's DNN
# ---------------------------------------------------------------------------
class PaperDNN(BatchedModel):
    """Fang et al. Table 7a DNN: conv30-relu-pool-conv50-relu-pool-fc200-relu-fcC.

    Image input (C_in, H, W): 3x3 convs without padding, 2x2 max pools with
    stride 2 (FLAIR ``dnn10``). Each spatial size S goes
    S -> S-2 -> floor((S-2)/2) -> that-2 -> floor(that/2); it must stay >= 1,
    which needs H, W >= 10 (28 -> 26 -> 13 -> 11 -> 5).
    MNIST (1, 28, 28), C = 10:
        conv1 30*1*9 + 30 = 300; conv2 50*30*9 + 50 = 13,550;
        fc1 (50*5*5)*200 + 200 = 250,200; fc2 200*10 + 10 = 2,010; d = 266,060.

    Feature input (F,) (FLAIR ``dnn2``, breast cancer): the F features are
    an NCHW image with 1 channel, height 1 and width F (reshape (-1, 1, 1, F));
    convs and pools are 1x1, so the spatial size stays 1 x F. F = 30, C = 2:
        conv1 30*1 + 30 = 60; conv2 50*30 + 50 = 1,550;
        fc1 (50*1*30)*200 + 200 = 300,200; fc2 200*2 + 2 = 402; d = 302,212.

    Layout (torch.nn twin order): conv1.weight (30, C_in, k, k), conv1.bias,
    conv2.weight (50, 30, k, k), conv2.bias, fc1.weight (200, 50*h*w),
    fc1.bias, fc2.weight (C, 200), fc2.bias.
    """

    CONV1, CONV2, HIDDEN = 30, 50, 200

    def __init__(self, input_shape: Tuple[int, ...], num_classes: int, init_magnitude: float = DEFAULT_INIT_MAGNITUDE):
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) == 1:
            self.image_shape = (1, 1, input_shape[0])
            self.kernel, self.pool = 1, 1
        elif len(input_shape) == 3:
            self.image_shape = input_shape
            self.kernel, self.pool = 3, 2
        else:
            raise ValueError(
                f"dnn takes a feature vector (F,) or an image (C, H, W); got input_shape {input_shape}"
            )
        c_in, height, width = self.image_shape
        out_h = self._spatial_out(height, "height", input_shape)
        out_w = self._spatial_out(width, "width", input_shape)
        k, flat = self.kernel, self.CONV2 * out_h * out_w
        layout = [
            ParamSpec("conv1.weight", (self.CONV1, c_in, k, k), "xavier"),
            ParamSpec("conv1.bias", (self.CONV1,), "zeros"),
            ParamSpec("conv2.weight", (self.CONV2, self.CONV1, k, k), "xavier"),
            ParamSpec("conv2.bias", (self.CONV2,), "zeros"),
            ParamSpec("fc1.weight", (self.HIDDEN, flat), "xavier"),
            ParamSpec("fc1.bias", (self.HIDDEN,), "zeros"),
            ParamSpec("fc2.weight", (num_classes, self.HIDDEN), "xavier"),
            ParamSpec("fc2.bias", (num_classes,), "zeros"),
        ]
        super().__init__("dnn", input_shape, num_classes, layout, init_magnitude)

    def _spatial_out(self, size: int, axis: str, input_shape: Tuple[int, ...]) -> int:
        """Size after conv-pool-conv-pool; ValueError when a stage would be empty."""
        k, pool = self.kernel, self.pool
        trace = [size]
        for _ in range(2):
            trace.append(trace[-1] - k + 1)  # valid conv
            trace.append(trace[-1] // pool if trace[-1] >= pool else 0)  # pool, stride = pool
        if min(trace) < 1:
            raise ValueError(
                f"dnn cannot take input_shape {input_shape}: {axis} goes "
                f"{' -> '.join(map(str, trace))} through conv{k}x{k}/pool{pool}x{pool}/conv/pool; "
                f"images need H, W >= 10"
            )
        return trace[-1]

    def _pool(self, h: Tensor) -> Tensor:
        return h if self.pool == 1 else F.max_pool2d(h, self.pool, self.pool)

    def activation_values(self) -> int:
        """conv1's output, CONV1 x (H - k + 1) x (W - k + 1): the largest layer."""
        _, height, width = self.image_shape
        return self.CONV1 * (height - self.kernel + 1) * (width - self.kernel + 1)

    def _logits(self, p: Dict[str, Tensor], x: Tensor) -> Tensor:
        m, b = x.shape[:2]
        h = to_channel_stacked(x.reshape(m, b, *self.image_shape))
        # relu(max_pool(z)) == max_pool(relu(z)) (ReLU is monotone), with the same
        # gradient; pooling first runs the ReLU and its backward on a 4x smaller tensor.
        h = F.relu(self._pool(batched_conv2d(h, p["conv1.weight"], p["conv1.bias"])))
        h = F.relu(self._pool(batched_conv2d(h, p["conv2.weight"], p["conv2.bias"])))
        h = from_channel_stacked(h, m)
        h = F.relu(batched_linear(h, p["fc1.weight"], p["fc1.bias"]))
        return batched_linear(h, p["fc2.weight"], p["fc2.bias"])


# ---------------------------------------------------------------------------
# ResNet20 (CIFAR v1) with GroupNorm
# ---------------------------------------------------------------------------
class ResNet20(BatchedModel):
    """CIFAR ResNet20 v1 (He et al. 2016; gluoncv ``cifar_resnet20_v1``) with GroupNorm.

    stem:  conv3x3(16, pad 1, no bias) - norm - ReLU
    3 stages x 3 basic blocks, channels 16/32/64; first block of stages 2, 3
    has stride 2 and a downsample branch conv1x1(stride 2, no bias) - norm.
    block: conv3x3 - norm - ReLU - conv3x3 - norm, + shortcut, ReLU.
    head:  global average pool - Dense(num_classes).

    Normalization: GroupNorm with `norm_groups` groups (default 2) instead of
    BatchNorm. BatchNorm needs running statistics (state outside the flat
    parameter vector, not aggregated by the robust rules) and its batch
    statistics would mix a worker's zero-weight padding rows into the real
    rows; GroupNorm is per example, so it is a pure function of (params, x).
    Scales init to 1, shifts to 0, conv weights Xavier (no conv biases).

    Any (C_in, H, W) input with H, W >= 1 works (stride-2 convs with padding 1
    give ceil(S/2)); (1, 64, 64) ends at 64 x 16 x 16, (1, 8, 8) at 64 x 2 x 2.
    For C_in = 1 and 8 classes d = 272,056.

    Layout (torch.nn twin order): stem.conv.weight, stem.norm.{weight,bias},
    then for s in 1..3, j in 0..2: stage{s}.block{j}.conv1.weight,
    .norm1.{weight,bias}, .conv2.weight, .norm2.{weight,bias},
    [.downsample.conv.weight, .downsample.norm.{weight,bias}], then
    fc.weight (C, 64), fc.bias.
    """

    CHANNELS = (16, 32, 64)
    BLOCKS_PER_STAGE = 3

    def __init__(
        self,
        input_shape: Tuple[int, ...],
        num_classes: int,
        init_magnitude: float = DEFAULT_INIT_MAGNITUDE,
        norm_groups: int = 2,
    ):
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"resnet20 takes an image (C, H, W); got input_shape {input_shape}")
        if any(c % norm_groups for c in self.CHANNELS):
            raise ValueError(f"norm_groups={norm_groups} must divide the channel counts {self.CHANNELS}")
        self.norm_groups = norm_groups
        self.blocks: List[Tuple[str, int, bool]] = []  # (prefix, stride, has_downsample)
        layout: List[ParamSpec] = []
        layout += self._conv_norm("stem.conv", "stem.norm", self.CHANNELS[0], input_shape[0], 3)
        c_prev = self.CHANNELS[0]
        for s, c in enumerate(self.CHANNELS, start=1):
            for j in range(self.BLOCKS_PER_STAGE):
                prefix = f"stage{s}.block{j}"
                stride = 2 if (s > 1 and j == 0) else 1
                downsample = c != c_prev
                layout += self._conv_norm(f"{prefix}.conv1", f"{prefix}.norm1", c, c_prev, 3)
                layout += self._conv_norm(f"{prefix}.conv2", f"{prefix}.norm2", c, c, 3)
                if downsample:
                    layout += self._conv_norm(f"{prefix}.downsample.conv", f"{prefix}.downsample.norm", c, c_prev, 1)
                self.blocks.append((prefix, stride, downsample))
                c_prev = c
        layout += [
            ParamSpec("fc.weight", (num_classes, c_prev), "xavier"),
            ParamSpec("fc.bias", (num_classes,), "zeros"),
        ]
        super().__init__("resnet20", input_shape, num_classes, layout, init_magnitude)

    @staticmethod
    def _conv_norm(conv: str, norm: str, c_out: int, c_in: int, k: int) -> List[ParamSpec]:
        return [
            ParamSpec(f"{conv}.weight", (c_out, c_in, k, k), "xavier"),
            ParamSpec(f"{norm}.weight", (c_out,), "ones"),
            ParamSpec(f"{norm}.bias", (c_out,), "zeros"),
        ]

    def activation_values(self) -> int:
        """The stem's output, 16 x H x W (stage 1 keeps it; later stages are smaller)."""
        return self.CHANNELS[0] * self.input_shape[1] * self.input_shape[2]

    def cpu_workers_per_chunk(self, batch: int) -> int:
        """1: on the CPU one worker at a time (plain convs) was faster than any grouped chunk,
        measured at batch 32: 1.69 s against 2.18 s for pairs (8 workers, 1 x 64 x 64), 0.88 s
        against 1.06 s for chunks of 8 (16 workers, 1 x 32 x 32)."""
        return 1

    def _norm(self, h: Tensor, p: Dict[str, Tensor], name: str) -> Tensor:
        return batched_group_norm(h, p[f"{name}.weight"], p[f"{name}.bias"], self.norm_groups)

    def _block(self, h: Tensor, p: Dict[str, Tensor], prefix: str, stride: int, downsample: bool) -> Tensor:
        out = batched_conv2d(h, p[f"{prefix}.conv1.weight"], None, stride=stride, padding=1)
        out = F.relu(self._norm(out, p, f"{prefix}.norm1"))
        out = batched_conv2d(out, p[f"{prefix}.conv2.weight"], None, stride=1, padding=1)
        out = self._norm(out, p, f"{prefix}.norm2")
        if downsample:
            h = batched_conv2d(h, p[f"{prefix}.downsample.conv.weight"], None, stride=stride, padding=0)
            h = self._norm(h, p, f"{prefix}.downsample.norm")
        return F.relu(out + h)

    def _logits(self, p: Dict[str, Tensor], x: Tensor) -> Tensor:
        m = x.shape[0]
        h = to_channel_stacked(x)
        h = batched_conv2d(h, p["stem.conv.weight"], None, stride=1, padding=1)
        h = F.relu(self._norm(h, p, "stem.norm"))
        for prefix, stride, downsample in self.blocks:
            h = self._block(h, p, prefix, stride, downsample)
        h = from_channel_stacked(h.mean(dim=(2, 3), keepdim=True), m)  # global average pool
        return batched_linear(h, p["fc.weight"], p["fc.bias"])


# ---------------------------------------------------------------------------
# Registry and factory
# ---------------------------------------------------------------------------
# name -> the model's class, called as cls(input_shape, num_classes, init_magnitude).
MODELS: Dict[str, Callable[..., BatchedModel]] = {"lr": LogisticRegression, "dnn": PaperDNN, "resnet20": ResNet20}


def get(
    name: str, input_shape: Tuple[int, ...], num_classes: int, *, init_magnitude: float = DEFAULT_INIT_MAGNITUDE
) -> BatchedModel:
    """Build model `name` (a key of MODELS) for `input_shape` (one example) and `num_classes`.

    Raises ValueError for an unknown name (listing the names) or an input shape
    the model cannot take (saying why).
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ValueError(f"input_shape must be non-empty with positive sizes, got {input_shape}")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](input_shape, num_classes, init_magnitude)
