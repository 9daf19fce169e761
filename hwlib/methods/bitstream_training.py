"""Bit-stream training: the stochastic DNN of Babu & Rajendran, image by image, many networks
at once.

A specialised training method: it consumes the memristive write model of
:mod:`hwlib.hardware.memristor` (one programming event per coincidence count) inside a
simulator of stream arithmetic (:mod:`hwlib.hardware.bitstream`) and keeps its own compiled
path (:mod:`hwlib.methods.bitstream_kernels`, numba), since batch-size-one training of a
stream network does not fit the mini-batch loop of :mod:`hwlib.methods.training`. The chapter's
stored experiments, sweeps and tables built on it are :mod:`hwlib.chapters.memristive`.

The network is the paper's 784-256-128-10 MLP (sigmoid hidden layers, softmax output,
cross-entropy, batch size one). Each layer's bias is one more synapse row driven by a constant
input of 1 (an all-ones stream). A network is one of

* **deterministic** (``bl = 0``): floating-point weights, exact signals and SGD updates;
* **stochastic, floating-point weights** (``bl > 0``, ``synapse = "float"``): every signal
  crosses the crossbar as a stream of ``BL`` bits and the weights change by eq. (4),
  ``w_ij <- w_ij - sign(delta_j) sign(x_i) B sum_n x_in AND d_jn``, with ``B = eta / BL``;
* **stochastic, memristive** (``synapse = "memristive"``): the same streams, with every weight
  a pair of devices (:mod:`hwlib.hardware.memristor`), ``w = (k+ - k-) B_w``,
  ``B_w = w_max / (levels - 1)`` per layer, where ``k+``, ``k-`` are the devices' continuous
  level coordinates (``G = G_min + k B``); a coincidence count ``n`` is a programming event
  that moves the device by ``n`` levels plus continuous Gaussian noise (the paper's Fig. 2),
  clipped to ``[G_min, G_max]``. The simulator stores ``k`` in fixed point, ``B / 1024``
  (:data:`hwlib.methods.bitstream_kernels.FIX`), so that every sum through the weights is an
  exact integer sum, the same in both implementations.

Inputs (:func:`network_inputs`): by default each image minus its own mean pixel
(``input_norm = "image_mean"``, the paper's "mean normalization"), so inputs are signed, in
[-1, 1]; ``"unit"`` keeps the pixels in [0, 1].

Streams (see :mod:`hwlib.hardware.bitstream`):

* forward pass: the inputs ``x`` (sign-magnitude: a stream of ``|x_i|``, the sign multiplies
  the count), ``h1`` and ``h2`` become streams from the 16-bit SNG; the next layer reads their
  signed counts over ``BL`` through exactly read weights; the sigmoid and the softmax are
  computed in the periphery;
* back-propagation: the errors ``delta3 = p - y`` and ``delta2`` become sign-magnitude
  streams of ``|delta|``; the layer below reads their signed counts over ``BL``; the sigmoid's
  derivative is applied in the periphery;
* weight update: each neuron's forward stream is also its row stream (the same pulses), and
  each error ``delta_j`` becomes a column stream of probability ``min(1, C |delta_j|)``. Floating-
  point networks use ``C = 1`` (eq. (4) as printed, ``B = eta / BL``); memristive networks have
  a fixed ``B_w`` and use ``C = eta / (B_w BL)``, so that the expected update is
  ``eta x |delta|`` in both cases. Error streams place their first one exactly (double
  precision), since their probabilities are often far below ``2**-16``.

The coincidence counts ``sum_n x_in AND d_jn`` are exact: ``popcount`` of the AND of bit-packed
streams in the compiled path, products of 0/1 matrices in the PyTorch path.

Two implementations of the same step (:class:`Lockstep`): compiled kernels
(:mod:`hwlib.methods.bitstream_kernels`, numba; the CPU default) and plain PyTorch
(``backend="torch"``; the default on CUDA). Every random number is a counter-based hash of
the network's key and of its use (image, signal, bit), so both see the same streams and
programming noise; the tests check that they train the same networks. The programming noise is
a standard normal per event drawn from such hashed words by the ziggurat method, computed
identically in both (:func:`hwlib.methods.bitstream_kernels.normal`, :func:`torch_normals`).
Each network has its own key, so its numbers do not depend on which networks share its group.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import load_dataset
from ..errors import ParameterError
from ..hardware.bitstream import check_bl
from ..hardware.memristor import MemristorConfig, check_memristor
from . import bitstream_kernels as kern

SYNAPSES = ("float", "memristive")
#: How pixels become network inputs (see :func:`network_inputs`).
INPUT_NORMS = ("image_mean", "unit")
BACKENDS = ("numba", "torch")
#: The paper's layer widths.
SIZES = (784, 256, 128, 10)
_KIND = {"deterministic": kern.KIND_DET, "float": kern.KIND_FLOAT,
         "memristive": kern.KIND_MEM}


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkConfig:
    """One network of the study and how it is trained (all fields JSON-able)."""

    bl: int = 0
    """Stream length BL of every signal (bits); 0: the deterministic floating-point network."""
    synapse: str = "float"
    """``"float"`` (floating-point weights) or ``"memristive"`` (two-device synapses)."""
    sigma_over_b: float = 0.1
    """Memristive: the paper's sigma / B, the standard deviation of the Gaussian programming
    noise of one programming event in units of the level spacing B (Fig. 2, Fig. 4)."""
    on_off_ratio: float = 15.0
    """Memristive: dynamic range G_max / G_min (the paper: 15)."""
    levels: int = 32
    """Memristive: conductance levels per device, G_min to G_max (the paper: 32); they set
    ``B = (G_max - G_min) / (levels - 1)``, the change of one pulse-pair overlap (eq. (4))."""
    reset_every: int = 15
    """Memristive: images between resets (the paper: 15; 0: never)."""
    reset_noise: bool = False
    """Memristive: whether a reset's re-programming of ``|G+ - G-|`` onto one device is a
    programming event with the same noise (True, what the paper implies: its one write model,
    Fig. 2, has noise in every programming; the chapter's profiles use it) or exact (False); see
    :class:`hwlib.hardware.memristor.MemristorConfig`. The default stays False so that the
    config, hence the store key and the random streams, of every network that does not set it (the
    floating-point ones among them) is what it was before this field mattered."""
    w_max: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Memristive: per layer, the weight of a synapse with G+ at G_max and G- at G_min, i.e.
    the conductance-to-weight scale (ours; the paper does not give it):
    ``w = w_max (G+ - G-) / (G_max - G_min) = B_w (k+ - k-)``, ``B_w = w_max / (levels - 1)``
    (the weight of one level spacing B)."""
    lr: float = 0.1
    """Learning rate eta in the first epoch."""
    lr_final: float = 0.01
    """Learning rate in the last epoch; in between eta falls geometrically, once per epoch."""
    hidden: tuple[int, int] = (256, 128)
    """Hidden widths (the paper: 256, 128)."""
    dataset: str = "mnist"
    """``mnist`` or ``fashion_mnist``."""
    epochs: int = 30
    """Passes over the training images."""
    n_train: int | None = None
    """Training images (a fixed subset; None: all 60,000)."""
    n_test: int | None = None
    """Test images (None: all 10,000)."""
    seed: int = 0
    """Seed of the initial weights and of the network's streams and programming noise."""
    data_seed: int = 0
    """Seed of the order in which images are presented (shared by a group of networks)."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    input_norm: str = "image_mean"
    """How pixels in [0, 1] become network inputs: ``image_mean`` (each image minus its own
    mean pixel: signed inputs, sign-magnitude streams) or ``unit`` (the pixels as they are)."""

    def __post_init__(self) -> None:
        if isinstance(self.bl, bool) or not isinstance(self.bl, int) or self.bl < 0:
            raise ParameterError(f"bl={self.bl!r}: must be a whole number >= 1 (stream length), "
                                 "or 0 for the deterministic network")
        if self.synapse not in SYNAPSES:
            raise ParameterError(f"synapse={self.synapse!r}: must be one of {', '.join(SYNAPSES)}")
        if self.synapse == "memristive" and self.bl == 0:
            raise ParameterError("synapse='memristive' needs bl >= 1: memristive synapses are "
                                 "programmed by stream coincidences")
        check_memristor(self.on_off_ratio, self.levels, self.sigma_over_b, self.reset_every,
                        self.reset_noise)
        if len(self.w_max) != 3 or not all(isinstance(w, (int, float)) and math.isfinite(w)
                                           and w > 0 for w in self.w_max):
            raise ParameterError(f"w_max={list(self.w_max)!r}: must be three numbers > 0")
        for name in ("lr", "lr_final"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ParameterError(f"{name}={v!r}: must be a number > 0")
        if len(self.hidden) != 2 or not all(isinstance(h, int) and h >= 1 for h in self.hidden):
            raise ParameterError(f"hidden={list(self.hidden)!r}: must be two widths >= 1")
        if self.synapse == "memristive" and _sum_bound(self) >= 2 ** 53:
            raise ParameterError(
                f"levels={self.levels}, bl={self.bl}, hidden={list(self.hidden)}: too large "
                "for exact sums through memristive weights; (levels - 1) * 1024 * bl * "
                "(widest layer + 1) must stay below 2**53")
        if self.dataset not in ("mnist", "fashion_mnist"):
            raise ParameterError(f"dataset={self.dataset!r}: must be mnist or fashion_mnist")
        check_bl(self.epochs, "epochs")
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None:
                check_bl(v, name)
        if self.device not in ("cpu", "cuda"):
            raise ParameterError(f"device={self.device!r}: must be cpu or cuda")
        if self.input_norm not in INPUT_NORMS:
            raise ParameterError(f"input_norm={self.input_norm!r}: must be one of "
                                 + ", ".join(INPUT_NORMS))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetworkConfig":
        """Build from a stored config (lists become tuples); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ParameterError(f"unknown network setting {unknown[0]!r}; allowed: "
                                 + ", ".join(sorted(names)))
        kw = dict(d)
        for key in ("w_max", "hidden"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values (the store's key)."""
        d = asdict(self)
        d["w_max"], d["hidden"] = [float(w) for w in self.w_max], list(self.hidden)
        return d

    @property
    def kind(self) -> str:
        """``deterministic``, ``float`` (stochastic, floating-point weights) or ``memristive``."""
        return "deterministic" if self.bl == 0 else self.synapse

    @property
    def memristor(self) -> MemristorConfig:
        """The device of a memristive network."""
        return MemristorConfig(self.on_off_ratio, self.levels, self.sigma_over_b,
                               self.reset_every, self.reset_noise)

    def learning_rate(self, epoch: int) -> float:
        """eta in ``epoch`` (0-based): geometric from ``lr`` to ``lr_final`` over the run."""
        if self.epochs == 1:
            return float(self.lr)
        return float(self.lr * (self.lr_final / self.lr) ** (epoch / (self.epochs - 1)))

    def group_key(self) -> tuple:
        """Networks with equal keys can train in one group (same images, same order)."""
        return (self.dataset, self.epochs, self.n_train, self.n_test, self.data_seed,
                self.hidden, self.device)


def _sum_bound(cfg: NetworkConfig) -> int:
    """The largest magnitude of a memristive network's forward or backward sum of fixed-point
    weights times signed stream counts: ``top FIX BL (widest layer + 1)``."""
    widest = max(SIZES[0], *cfg.hidden, SIZES[-1]) + 1
    return (cfg.levels - 1) * kern.FIX * cfg.bl * widest


def stream_seed(cfg: NetworkConfig, salt: int) -> int:
    """Key of a network's random numbers: a hash of its whole config and a salt (so different
    networks get independent streams, and a network the same ones in any group)."""
    import hashlib
    import json

    text = json.dumps({"config": cfg.to_dict(), "salt": salt}, sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


def initial_weights(cfg: NetworkConfig) -> list[torch.Tensor]:
    """Initial weights (bias as last row), uniform in ``+-1/sqrt(fan_in)``; the paper does not
    give its initialization."""
    gen = torch.Generator().manual_seed(int(cfg.seed))
    sizes = (SIZES[0], *cfg.hidden, SIZES[-1])
    return [(torch.rand(n + 1, m, generator=gen) * 2 - 1) / math.sqrt(n)
            for n, m in zip(sizes[:-1], sizes[1:])]


def network_inputs(x: torch.Tensor, input_norm: str = "image_mean") -> torch.Tensor:
    """Network inputs from images in [0, 1] (N, 784): ``image_mean`` subtracts each image's
    own mean pixel (the paper's mean normalization; inputs in [-1, 1]), ``unit`` keeps them."""
    if input_norm not in INPUT_NORMS:
        raise ParameterError(f"input_norm={input_norm!r}: must be one of "
                             + ", ".join(INPUT_NORMS))
    x = x.to(torch.float32)
    if input_norm == "unit":
        return x
    return x - x.mean(1, keepdim=True)


# --- the counter-based generator in PyTorch (the same numbers as the compiled kernels) --------

_U64 = 1 << 64


def _s64(v: int) -> int:
    v %= _U64
    return v - _U64 if v >= 1 << 63 else v


def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 words."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def hash_words(key: int, addr: torch.Tensor) -> torch.Tensor:
    """:func:`hwlib.methods.bitstream_kernels.word` in PyTorch: 64 random bits (int64) per
    address."""
    z = (addr + 1) * _s64(int(kern.GAMMA)) + _s64(key)
    z = (z ^ _lsr(z, 30)) * _s64(int(kern._M1))
    z = (z ^ _lsr(z, 27)) * _s64(int(kern._M2))
    return z ^ _lsr(z, 31)


def _unit(w: torch.Tensor) -> torch.Tensor:
    return (_lsr(w, 11).to(torch.float64) + 0.5) * 2.0 ** -53


def _chunks(key: int, addr0: int, n: int, bl: int, device) -> torch.Tensor:
    """16-bit numbers (n, bl): stream ``i``'s bit ``t`` uses number ``t % 4`` of word
    ``addr0 + i ceil(BL/4) + t // 4``."""
    wps = (bl + 3) // 4
    addr = (addr0 + torch.arange(n, device=device).unsqueeze(1) * wps
            + torch.arange(wps, device=device))
    z = hash_words(key, addr)
    parts = torch.stack([_lsr(z, 16 * q) & 0xFFFF for q in range(4)], -1)
    return parts.reshape(n, 4 * wps)[:, :bl]


def _threshold(p: torch.Tensor) -> torch.Tensor:
    return torch.ceil(p.to(torch.float64) * 65536.0).to(torch.int64)


def _torch_horner(x: torch.Tensor, coefs: Sequence[float]) -> torch.Tensor:
    """:func:`hwlib.methods.bitstream_kernels.horner`: the same sequence ``p = p * x + c``."""
    p = torch.full_like(x, coefs[0])
    for c in coefs[1:]:
        p = p * x + c
    return p


def torch_log(x: torch.Tensor) -> torch.Tensor:
    """:func:`hwlib.methods.bitstream_kernels.plog` in PyTorch (the same doubles; ``torch.log``
    differs from the compiled path's library log in the last bit)."""
    m, e = torch.frexp(x)
    low = m < kern.SQRT_HALF
    m = torch.where(low, m * 2.0, m)
    e = (e - low.to(e.dtype)).to(torch.float64)
    f = m - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    return e * kern.LN2_HI + (e * kern.LN2_LO
                               + (2.0 * s + s * s2 * _torch_horner(s2, kern.LOG_SERIES)))


def torch_exp(t: torch.Tensor) -> torch.Tensor:
    """:func:`hwlib.methods.bitstream_kernels.pexp` in PyTorch (the same doubles)."""
    n = torch.floor(t * kern.INV_LN2 + 0.5)
    r = (t - n * kern.LN2_HI) - n * kern.LN2_LO
    two_n = ((n.to(torch.int64) + 1023) << 52).view(torch.float64)      # 2**n, exactly
    return _torch_horner(r, kern.EXP_SERIES) * two_n


def _signed_unit(w: torch.Tensor) -> torch.Tensor:
    """:func:`hwlib.methods.bitstream_kernels.signed_unit`: ``(2 (w >> 11) - 2**53 + 1) 2**-53``."""
    return (2 * (_lsr(w, 11) - (1 << 52)) + 1).to(torch.float64) * 2.0 ** -53


def torch_normals(key: int, addr: torch.Tensor) -> torch.Tensor:
    """:func:`hwlib.methods.bitstream_kernels.normal` in PyTorch: the standard normal (float64)
    at each address of ``addr`` (int64), the same ziggurat draws as the compiled path, bit for
    bit."""
    dev = addr.device
    X = torch.as_tensor(kern.ZIG_X, device=dev)
    X2 = torch.as_tensor(kern.ZIG_X2, device=dev)
    ratio = torch.as_tensor(kern.ZIG_RATIO, device=dev)
    a = addr.reshape(-1)
    z = torch.empty(a.shape, dtype=torch.float64, device=dev)
    todo = torch.arange(a.numel(), device=dev)
    w = hash_words(key, a)
    j = torch.zeros_like(a)                     # further words used so far, per draw

    def extra(sel: torch.Tensor, jj: torch.Tensor) -> torch.Tensor:
        return hash_words(key, a[sel] + (jj << 56))

    while todo.numel():
        i = w & (kern.ZIG_LAYERS - 1)
        u = _signed_unit(w)
        fast = u.abs() < ratio[i]
        z[todo[fast]] = u[fast] * X[i[fast]]
        tail = ~fast & (i == 0)                 # the tail beyond R, until each is accepted
        t_idx, t_u, t_j = todo[tail], u[tail], j[tail]
        while t_idx.numel():
            x = torch_log(_unit(extra(t_idx, t_j + 1))) / kern.ZIG_R
            y = torch_log(_unit(extra(t_idx, t_j + 2)))
            t_j = t_j + 2
            ok = -2.0 * y >= x * x
            z[t_idx[ok]] = torch.where(t_u[ok] < 0.0, x[ok] - kern.ZIG_R, kern.ZIG_R - x[ok])
            t_idx, t_u, t_j = t_idx[~ok], t_u[~ok], t_j[~ok]
        wedge = ~fast & (i > 0)
        todo, i, u, j = todo[wedge], i[wedge], u[wedge], j[wedge]
        x = u * X[i]
        f0 = torch_exp(-0.5 * (X2[i] - x * x))
        f1 = torch_exp(-0.5 * (X2[i + 1] - x * x))
        ok = f1 + _unit(extra(todo, j + 1)) * (f0 - f1) < 1.0
        z[todo[ok]] = x[ok]
        todo, j = todo[~ok], j[~ok]
        w = extra(todo, j + 2)
        j = j + 2
    return z.reshape(addr.shape)


def torch_noise_steps(s_fx: float, key: int, addr: torch.Tensor) -> torch.Tensor:
    """:func:`hwlib.methods.bitstream_kernels.noise_steps` in PyTorch: ``rint(s_fx z)`` (int64)."""
    if s_fx == 0.0:
        return torch.zeros_like(addr)
    return torch.round(s_fx * torch_normals(key, addr)).to(torch.int64)


def torch_row_streams(p: torch.Tensor, key: int, base: int, bl: int) -> torch.Tensor:
    """:func:`hwlib.methods.bitstream_kernels.row_streams` in PyTorch: bool streams (n, BL)."""
    return _chunks(key, base, p.shape[0], bl, p.device) < _threshold(p).unsqueeze(1)


def torch_error_streams(delta: torch.Tensor, gain: float, key: int, u0: int, t0: int, bl: int):
    """:func:`hwlib.methods.bitstream_kernels.error_streams` in PyTorch: (bits (n, BL), sign, signed
    count, active)."""
    n, dev = delta.shape[0], delta.device
    q = torch.clamp(delta.abs().to(torch.float64) * gain, max=1.0)
    u = _unit(hash_words(key, u0 + torch.arange(n, device=dev)))
    first = torch.floor(torch.log(u) / torch.log1p(-q))
    active = (q > 0) & ~(u < 1.0 - bl * q - 1e-9) & (first < bl)
    pos = torch.arange(bl, device=dev)
    f = torch.where(active, first, torch.full_like(first, float(bl))).unsqueeze(1)
    tail = _chunks(key, t0, n, bl, dev) < _threshold(q).unsqueeze(1)
    bits = ((tail & (pos > f)) | (pos == f)) & active.unsqueeze(1)
    sign = torch.where(active, torch.sign(delta).to(torch.int64), 0)
    return bits, sign, sign * bits.sum(1), active


# --- the simulator --------------------------------------------------------------------------


class Lockstep:
    """Networks (:class:`NetworkConfig`) trained on the same image sequence, one image at a time.

    Storage (torch tensors, shared with the compiled kernels on the CPU): floating-point weights
    of the deterministic and stochastic networks in one float32 buffer; memristive device
    states, the level coordinates ``k+``, ``k-`` (conductance ``G = G_min + k B``, continuous)
    and their difference ``k+ - k-``, in three integer buffers in fixed point (``K = k FIX``,
    :data:`hwlib.methods.bitstream_kernels.FIX` = 1024 steps per level spacing; int16 up to 32
    levels); per network, layers 1 to 3 as (outputs, inputs + 1), bias last.

    Args:
        configs: the networks; all must share :meth:`NetworkConfig.group_key`.
        backend: ``"numba"`` (compiled kernels, CPU) or ``"torch"`` (plain PyTorch, any
            device); default numba on the CPU, torch on CUDA.
    """

    def __init__(self, configs: Sequence[NetworkConfig], backend: str | None = None) -> None:
        if not configs:
            raise ParameterError("configs: at least one network is needed")
        if len({c.group_key() for c in configs}) > 1:
            raise ParameterError("configs: a group of networks needs the same dataset, epochs, "
                                 "n_train, n_test, data_seed, hidden and device")
        self.configs = c = list(configs)
        self.device = dev = torch.device(c[0].device)
        if backend is None:
            backend = "numba" if dev.type == "cpu" else "torch"
        if backend not in BACKENDS:
            raise ParameterError(f"backend={backend!r}: must be one of {', '.join(BACKENDS)}")
        if backend == "numba" and dev.type != "cpu":
            raise ParameterError("backend='numba' runs on the CPU; use backend='torch' on cuda")
        self.backend = backend
        self.K = K = len(c)
        self.sizes = n0, n1, n2, n3 = (SIZES[0], *c[0].hidden, SIZES[-1])
        self.shapes = [(n1, n0 + 1), (n2, n1 + 1), (n3, n2 + 1)]
        self.size = S = sum(a * b for a, b in self.shapes)
        self.kind = np.array([_KIND[x.kind] for x in c], dtype=np.int64)
        mem = [k for k in range(K) if c[k].kind == "memristive"]
        flt = [k for k in range(K) if c[k].kind != "memristive"]
        self.top = np.array([x.levels - 1 for x in c], dtype=np.int64)
        #: the top level in fixed point, ``(levels - 1) FIX``
        self.top_fx = self.top * kern.FIX
        small = all(self.top_fx[k] <= np.iinfo(np.int16).max for k in mem)
        ftype = torch.int16 if small else torch.int32
        self.Wf = torch.zeros(max(1, len(flt)) * S, dtype=torch.float32, device=dev)
        self.Lp = torch.zeros(max(1, len(mem)) * S, dtype=ftype, device=dev)
        self.Lm = torch.zeros_like(self.Lp)
        self.Ld = torch.zeros_like(self.Lp)
        self.off = np.zeros(K, dtype=np.int64)
        #: per network and layer, B_w (the weight of one level spacing) and B_w / FIX
        self.bw = np.ones((K, 3))
        self.bw_fx = np.ones((K, 3))
        for k, x in enumerate(c):
            w0 = [w.t().contiguous().to(dev) for w in initial_weights(x)]
            if x.kind == "memristive":
                self.off[k] = mem.index(k) * S
                self.bw[k] = [w / (x.levels - 1) for w in x.w_max]
                self.bw_fx[k] = self.bw[k] / kern.FIX
                for i, w in enumerate(w0):
                    self._program_initial(k, i, w)
            else:
                self.off[k] = flt.index(k) * S
                for w, v in zip(self.layer_weights(k), w0):
                    w.copy_(v)
        self.keys = np.array([stream_seed(x, 1) for x in c], dtype=np.uint64)
        self.bl = np.array([x.bl for x in c], dtype=np.int64)
        self.reset_every = np.array([x.reset_every if x.kind == "memristive" else 0
                                     for x in c], dtype=np.int64)
        self.reset_noise = np.array([int(x.reset_noise) for x in c], dtype=np.int64)
        #: programming noise in fixed-point steps, ``sigma/B FIX`` (0: none)
        self.s_fx = np.array([x.sigma_over_b * kern.FIX if x.kind == "memristive" else 0.0
                              for x in c])
        # the memristive forward and backward sums are integer sums; they stay exact in int32
        # below 2**31, beyond the kernels accumulate in float64 (exact below 2**53, which
        # NetworkConfig checks)
        self.wide = any(_sum_bound(c[k]) >= 2 ** 31 for k in mem)
        self.eta = np.zeros(K)
        self.B = np.zeros(K)
        self.gains = np.ones((K, 3))
        self.wrong = np.zeros(K, dtype=np.int64)
        self.events = np.zeros(K, dtype=np.int64)
        self.train_s = np.zeros(K)
        self.steps = 0
        self._inputs: tuple[Any, dict[str, Any]] | None = None
        #: set to a list to record every layer's update streams and counts (torch backend)
        self.trace: list[dict[str, Any]] | None = None
        self.set_epoch(0)

    # -- storage --------------------------------------------------------------------------

    def _views(self, flat: torch.Tensor, k: int) -> list[torch.Tensor]:
        out, o = [], int(self.off[k])
        for sh in self.shapes:
            n = sh[0] * sh[1]
            out.append(flat[o:o + n].view(sh))
            o += n
        return out

    def layer_weights(self, k: int) -> list[torch.Tensor]:
        """Network ``k``'s floating-point weights, per layer (outputs, inputs + 1), views."""
        if self.configs[k].kind == "memristive":
            raise ParameterError("layer_weights: a memristive network stores device states; "
                                 "use layer_levels or weights")
        return self._views(self.Wf, k)

    def layer_states(self, k: int, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memristive network ``k``, layer ``i``: views of the fixed-point states ``K+``,
        ``K-`` and ``K+ - K-`` (outputs, inputs + 1), ``K = k FIX``."""
        if self.configs[k].kind != "memristive":
            raise ParameterError(f"layer_states: network {k} has no memristive synapses")
        return tuple(self._views(buf, k)[i] for buf in (self.Lp, self.Lm, self.Ld))

    def layer_levels(self, k: int, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Memristive network ``k``, layer ``i``: the level coordinates ``k+``, ``k-`` and
        ``k+ - k-`` (float64 copies, (outputs, inputs + 1)); conductances ``G_min + k B``."""
        return tuple(t.to(torch.float64) / kern.FIX for t in self.layer_states(k, i))

    def _program_initial(self, k: int, i: int, w: torch.Tensor) -> None:
        """Program network ``k``'s layer ``i`` from the reset state to the weights ``w``
        (outputs, inputs + 1), exactly (no programming noise): ``|w| / B_w`` levels onto
        ``G+`` (w > 0) or ``G-`` (w < 0), clipped to the top level, at the fixed-point
        resolution."""
        top = float(self.top[k])
        lv = torch.clamp(w.to(torch.float64) / float(self.bw[k, i]), -top, top)
        d = torch.round(lv * kern.FIX)
        kp, km, kd = self.layer_states(k, i)
        kp.copy_(d.clamp(min=0))
        km.copy_((-d).clamp(min=0))
        kd.copy_(d)

    def weights(self) -> list[list[torch.Tensor]]:
        """Every network's weights: per network, three (inputs + 1, outputs) float32 matrices,
        bias last (memristive: ``B_w (k+ - k-)``, rounded once to float32)."""
        out = []
        for k, c in enumerate(self.configs):
            if c.kind == "memristive":
                out.append([level_weights(self.layer_levels(k, i)[2].t(), float(self.bw[k, i]))
                            for i in range(3)])
            else:
                out.append([w.t().clone() for w in self.layer_weights(k)])
        return out

    def set_epoch(self, epoch: int) -> None:
        """Each network's learning rate in ``epoch``; B of the floating-point networks and C of
        the memristive ones follow from it."""
        for k, c in enumerate(self.configs):
            eta = c.learning_rate(epoch)
            self.eta[k] = eta
            if c.kind == "float":
                self.B[k] = eta / c.bl
            elif c.kind == "memristive":
                self.gains[k] = eta / (self.bw[k] * c.bl)

    # -- training -------------------------------------------------------------------------

    def inputs(self, x: Any, k: int) -> Any:
        """Network ``k``'s inputs for images ``x`` in [0, 1] (cached per reading)."""
        if self._inputs is None or self._inputs[0] is not x:
            self._inputs = (x, {})
        norm = self.configs[k].input_norm
        cache = self._inputs[1]
        if norm not in cache:
            v = network_inputs(torch.as_tensor(x), norm).to(self.device).contiguous()
            cache[norm] = v.numpy() if self.backend == "numba" else v
        return cache[norm]

    def train(self, x: Any, y: Any, order: Sequence[int] | None = None) -> None:
        """Train every network on images ``x[order]`` (in [0, 1], (N, 784)), one image at a
        time, labels ``y``; each network in turn (its numbers do not depend on the others)."""
        y_np = np.ascontiguousarray(np.asarray(torch.as_tensor(y).cpu(), dtype=np.int64))
        idx = np.arange(len(y_np)) if order is None else np.asarray(order, dtype=np.int64)
        for k in range(self.K):
            start = time.perf_counter()
            if self.backend == "numba":
                self._train_numba(k, self.inputs(x, k), y_np, idx)
            else:
                xv = self.inputs(x, k)
                for m, i in enumerate(idx.tolist()):
                    self._torch_step(k, xv[i], int(y_np[i]), self.steps + m + 1)
            self.train_s[k] += time.perf_counter() - start
        self.steps += len(idx)

    def step(self, x: Any, y: int) -> None:
        """Train every network on one image ``x`` (784,) in [0, 1] with label ``y``."""
        self.train(torch.as_tensor(x).reshape(1, -1), [int(y)])

    def _train_numba(self, k: int, x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> None:
        n0, n1, n2, n3 = self.sizes
        S, o = self.size, int(self.off[k])
        mem = self.configs[k].kind == "memristive"
        Wf = self.Wf.numpy()[0:S] if mem else self.Wf.numpy()[o:o + S]
        lo = o if mem else 0
        Fp, Fm, Fd = (buf.numpy()[lo:lo + S] for buf in (self.Lp, self.Lm, self.Ld))
        wrong, events = kern.train_network(
            x, y, idx, self.steps, int(self.kind[k]), int(self.bl[k]), self.keys[k],
            float(self.eta[k]), float(self.B[k]), self.gains[k], self.bw_fx[k],
            int(self.top_fx[k]), int(self.reset_every[k]), int(self.reset_noise[k]),
            float(self.s_fx[k]), Wf, Fp, Fm, Fd, n1, n2, n3, self.wide)
        self.wrong[k] += wrong
        self.events[k] += events

    def reset(self, k: int) -> None:
        """Apply the reset rule to memristive network ``k`` now (at the current step's
        addresses for a noisy reset)."""
        n0, n1, n2, n3 = self.sizes
        bl = int(self.bl[k])
        lay = kern.step_layout(n0, n1, n2, n3, bl)
        base = int(self.steps) * lay[5] + lay[4]
        o, S = int(self.off[k]), self.size
        Fp, Fm, Fd = (buf[o:o + S] for buf in (self.Lp, self.Lm, self.Ld))
        if self.backend == "numba":
            kern.reset_levels(Fp.numpy(), Fm.numpy(), Fd.numpy(), int(self.top_fx[k]),
                              bool(self.reset_noise[k]), self.keys[k], np.uint64(base),
                              float(self.s_fx[k]))
        else:
            self._torch_reset(k, Fp, Fm, Fd, base)

    # -- the PyTorch step (the same algorithm as the compiled kernels) ----------------------

    def _torch_step(self, k: int, x: torch.Tensor, y: int, step: int) -> None:
        if self.configs[k].kind == "deterministic":
            self._torch_det(k, x, y)
        else:
            self._torch_sto(k, x, y, step)

    def _torch_det(self, k: int, x: torch.Tensor, y: int) -> None:
        W1, W2, W3 = self.layer_weights(k)
        n0, n1, n2, n3 = self.sizes
        f8 = torch.float64
        h1 = 1.0 / (1.0 + torch.exp(-((W1[:, :n0] @ x).to(f8) + W1[:, n0].to(f8))))
        v1 = h1.float()
        h2 = 1.0 / (1.0 + torch.exp(-((W2[:, :n1] @ v1).to(f8) + W2[:, n1].to(f8))))
        v2 = h2.float()
        z3 = (W3[:, :n2] @ v2).to(f8) + W3[:, n2].to(f8)
        d3, best = _softmax_error(z3, y)
        d2 = (d3.float() @ W3[:, :n2]).to(f8) * h2 * (1.0 - h2)
        d1 = (d2.float() @ W2[:, :n1]).to(f8) * h1 * (1.0 - h1)
        for W, v, d in ((W1, x, d1), (W2, v1, d2), (W3, v2, d3)):
            g = (float(self.eta[k]) * d).float()
            W[:, :-1] -= g.unsqueeze(1) * v.unsqueeze(0)
            W[:, -1] -= g
        self.wrong[k] += int(best != y)

    def _torch_sto(self, k: int, x: torch.Tensor, y: int, step: int) -> None:
        n0, n1, n2, n3 = self.sizes
        c = self.configs[k]
        mem = c.kind == "memristive"
        bl, key = int(self.bl[k]), int(self.keys[k])
        o_rows, o_eu, o_et, o_noise, o_reset, stride = kern.step_layout(n0, n1, n2, n3, bl)
        base = step * stride
        wps = (bl + 3) // 4
        inv = 1.0 / bl
        f8 = torch.float64
        if mem:
            D = [self.layer_states(k, i)[2] for i in range(3)]
        else:
            W = self.layer_weights(k)

        # memristive sums: integers below 2**53, exact in float64 in any order
        def layer(i, counts, n_in):
            if mem:
                d = D[i].to(f8)
                return (d[:, :n_in] @ counts.to(f8) + d[:, n_in] * bl) * (
                    float(self.bw_fx[k, i]) * inv)
            return (W[i][:, :n_in] @ counts.float()).to(f8) * inv + W[i][:, n_in].to(f8)

        def back(i, e, n_in):
            if mem:
                return (e.to(f8) @ D[i][:, :n_in].to(f8)) * (float(self.bw_fx[k, i]) * inv)
            return (e.float() @ W[i][:, :n_in]).to(f8) * inv

        sx = torch.sign(x)
        X = torch_row_streams(torch.clamp(x.abs(), max=1.0), key, base + o_rows, bl)
        h1 = 1.0 / (1.0 + torch.exp(-layer(0, sx * X.sum(1), n0)))
        H1 = torch_row_streams(h1.float(), key, base + o_rows + n0 * wps, bl)
        h2 = 1.0 / (1.0 + torch.exp(-layer(1, H1.sum(1), n1)))
        H2 = torch_row_streams(h2.float(), key, base + o_rows + (n0 + n1) * wps, bl)
        z3 = layer(2, H2.sum(1), n2)
        d3, best = _softmax_error(z3, y)
        e3 = torch_error_streams(d3, 1.0, key, base + o_eu, base + o_et, bl)[2]
        d2 = back(2, e3, n2) * h2 * (1.0 - h2)
        e2 = torch_error_streams(d2, 1.0, key, base + o_eu + n3, base + o_et + n3 * wps, bl)[2]
        d1 = back(1, e2, n1) * h1 * (1.0 - h1)
        eu, et = o_eu + n3 + n2, o_et + (n3 + n2) * wps
        rows = [(X, sx), (H1, torch.ones(n1, device=x.device)),
                (H2, torch.ones(n2, device=x.device))]
        offs = [0, n1 * (n0 + 1), n1 * (n0 + 1) + n2 * (n1 + 1)]
        prev = 0
        for i, (delta, n_out) in enumerate(((d1, n1), (d2, n2), (d3, n3))):
            gain = float(self.gains[k, i])
            Dbits, sgn, _, active = torch_error_streams(delta, gain, key, base + eu + prev,
                                                        base + et + prev * wps, bl)
            prev += n_out
            R, sr = rows[i]
            act = torch.nonzero(active).squeeze(1)
            if act.numel() == 0:
                continue
            cnt = Dbits[act].float() @ R.float().t()                   # (A, n_in): exact
            cb = Dbits[act].sum(1).float()                              # the all-ones bias row
            if self.trace is not None:
                self.trace.append({"network": k, "layer": i, "rows": R.clone(),
                                   "cols": Dbits[act].clone(), "col_index": act.clone(),
                                   "counts": cnt.clone()})
            if mem:
                self._torch_program(k, i, act, sgn[act], torch.cat([cnt, cb.unsqueeze(1)], 1),
                                    torch.cat([sr, torch.ones(1, device=x.device)]),
                                    base + o_noise + offs[i])
            else:
                coef = (float(self.B[k]) * sgn[act].to(f8)).float()
                Wi = W[i]
                Wi[act, :-1] -= coef.unsqueeze(1) * (sr.unsqueeze(0) * cnt)
                Wi[act, -1] -= coef * cb
        self.wrong[k] += int(best != y)
        if mem and self.reset_every[k] > 0 and step % int(self.reset_every[k]) == 0:
            o, S = int(self.off[k]), self.size
            self._torch_reset(k, self.Lp[o:o + S], self.Lm[o:o + S], self.Ld[o:o + S],
                              base + o_reset)

    def _torch_program(self, k, i, act, sgn, cnt, sr, addr0) -> None:
        """:func:`hwlib.methods.bitstream_kernels.program_events` in PyTorch."""
        kp, km, d = self.layer_states(k, i)
        m = cnt.shape[1]
        direction = -sgn.unsqueeze(1) * sr.unsqueeze(0)                 # +1: raise the weight
        a, col = torch.nonzero(cnt).unbind(1)
        syn = act[a] * m + col
        step = cnt[a, col].to(torch.int64) * kern.FIX + torch_noise_steps(
            float(self.s_fx[k]), int(self.keys[k]), addr0 + syn)
        self.events[k] += int(syn.numel())
        up = direction[a, col] > 0
        ok = step > 0
        top = int(self.top_fx[k])
        for states, sel, sign in ((kp, up & ok, 1), (km, ~up & ok, -1)):
            s = syn[sel]
            flat = states.view(-1)
            old = flat[s].to(torch.int64)
            new = torch.clamp(old + step[sel], max=top)
            flat[s] = new.to(flat.dtype)
            dflat = d.view(-1)
            dflat[s] = (dflat[s].to(torch.int64) + sign * (new - old)).to(dflat.dtype)

    def _torch_reset(self, k, Fp, Fm, Fd, addr0) -> None:
        """:func:`hwlib.methods.bitstream_kernels.reset_levels` in PyTorch."""
        d = Fd.to(torch.int64)
        mag = d.abs()
        if self.reset_noise[k] and self.s_fx[k] > 0:
            nz = torch.nonzero(d).squeeze(1)
            noisy = mag[nz] + torch_noise_steps(float(self.s_fx[k]), int(self.keys[k]),
                                                addr0 + nz)
            mag[nz] = torch.clamp(noisy, min=0, max=int(self.top_fx[k]))
        pos = d > 0
        Fp.copy_(torch.where(pos, mag, 0).to(Fp.dtype))
        Fm.copy_(torch.where(pos | (d == 0), 0, mag).to(Fm.dtype))
        Fd.copy_(torch.where(pos, mag, -mag).to(Fd.dtype))

    # -- evaluation ---------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, x: torch.Tensor, bl: Sequence[int] | None = None, seed: int = 0,
                batch: int = 2000) -> torch.Tensor:
        """Predicted labels of every network for images ``x`` (N, 784) in [0, 1].

        Args:
            x: images in [0, 1].
            bl: per network, the stream length used for inference (0: exact signals);
                default each network's training BL.
            seed: seed of the inference streams (each network has its own key).
            batch: images per chunk.
        """
        ws = self.weights()
        out = torch.empty(self.K, x.shape[0], dtype=torch.long, device=self.device)
        for k, cfg in enumerate(self.configs):
            b = cfg.bl if bl is None else bl[k]
            key = stream_seed(cfg, 2) + 7 * int(seed)
            xin = network_inputs(x, cfg.input_norm)
            out[k] = forward_labels(ws[k], xin, b, key, batch, self.backend)
        return out


def _softmax_error(z: torch.Tensor, y: int) -> tuple[torch.Tensor, int]:
    """``softmax(z) - onehot(y)`` (float64) and the argmax of ``z`` (first maximum)."""
    best = int(torch.argmax(z))
    e = torch.exp(z - z[best])
    d = e / e.sum()
    d[y] -= 1.0
    return d, best


def stream_estimate(values: torch.Tensor, bl: int, key: int, base: int = 0,
                    backend: str = "numba") -> torch.Tensor:
    """Signed stream counts over BL of every value (N, n): ``sign(v) count / BL`` of a 16-bit
    SNG stream of ``min(1, |v|)`` (image ``a``, value ``i``, bit ``t``: number ``t % 4`` of word
    ``base + (a n + i) ceil(BL/4) + t // 4``); ``bl = 0``: exact."""
    if bl == 0:
        return values
    N, n = values.shape
    if backend == "numba" and values.device.type == "cpu":
        counts = kern.stream_counts(values.contiguous().numpy(), np.uint64(key % _U64),
                                    np.uint64(base), int(bl))
        return torch.from_numpy(counts) / bl
    out = []
    step = max(1, 4_000_000 // (n * bl))
    for s in range(0, N, step):
        v = values[s:s + step]
        m = v.shape[0]
        bits = _chunks(key, base + s * n * ((bl + 3) // 4), m * n, bl, v.device) \
            < _threshold(torch.clamp(v.abs(), max=1.0).reshape(-1)).unsqueeze(1)
        out.append((torch.sign(v) * bits.sum(1).reshape(m, n)).float())
    return torch.cat(out) / bl


def forward_labels(ws: Sequence[torch.Tensor], x: torch.Tensor, bl: int, key: int = 0,
                   batch: int = 2000, backend: str = "numba") -> torch.Tensor:
    """Inference of one network: labels for network inputs ``x`` (N, 784); signals as streams
    of length ``bl`` (0: exact), weights read exactly. Layer ``l``'s streams use addresses from
    ``l 2**40`` of generator ``key``."""
    labels = []
    for s in range(0, x.shape[0], batch):
        a = x[s:s + batch]
        for i, w in enumerate(ws):
            a = stream_estimate(a, bl, key, (i << 40) + s * a.shape[1] * ((bl + 3) // 4),
                                backend)
            z = torch.addmm(w[-1], a, w[:-1])
            a = torch.sigmoid(z) if i < 2 else z
        labels.append(a.argmax(1))
    return torch.cat(labels)


# --- reference implementation (tests, benchmark baseline) -------------------------------------


class ReferenceMLP(torch.nn.Module):
    """The deterministic network in plain PyTorch autograd: SGD with batch size one.

    The reference the simulator's deterministic path is tested against, and the benchmark's
    baseline loop.
    """

    def __init__(self, weights: Sequence[torch.Tensor]) -> None:
        super().__init__()
        self.ws = torch.nn.ParameterList([torch.nn.Parameter(w.clone()) for w in weights])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        a = x
        for i, w in enumerate(self.ws):
            z = a @ w[:-1] + w[-1]
            a = torch.sigmoid(z) if i < len(self.ws) - 1 else z
        return a

    def train_step(self, x: torch.Tensor, y: int, lr: float) -> None:
        """One SGD step on one input (cross-entropy of the softmax output)."""
        loss = F.cross_entropy(self(x.unsqueeze(0)), torch.tensor([y], device=x.device))
        self.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for w in self.ws:
                w -= lr * w.grad


# --- training runs ----------------------------------------------------------------------------


def load_split(cfg: NetworkConfig, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 784) in [0, 1] and labels of the config's training or test split."""
    n = cfg.n_train if train else cfg.n_test
    x, y = load_dataset(cfg.dataset, train, n, cfg.data_seed)
    return x.flatten(1).to(cfg.device), y.to(cfg.device)


def train_lockstep(configs: Sequence[NetworkConfig], progress: bool = True,
                   on_epoch: Callable[[int, Lockstep], None] | None = None,
                   backend: str | None = None) -> list[dict[str, Any]]:
    """Train networks on one image sequence and evaluate them after every epoch.

    Returns:
        Per network (in order): ``test_acc`` (per epoch, %), ``train_error`` (per epoch: the
        fraction of training images misclassified by the forward pass while training on them,
        %), ``lr`` (per epoch), ``events_per_image`` (memristive programming events, per epoch),
        ``train_s`` (the network's own training seconds), ``images_per_s`` (its training
        throughput), ``epoch_time_s`` (the group's wall time per epoch), and the final weights
        (deterministic: float32 ``w1..w3``; memristive: ``weight_levels1..3 = k+ - k-``, the
        conductance difference ``(G+ - G-) / B`` of every synapse in level spacings, continuous,
        float32 (exact: multiples of ``1 / FIX``; float64 beyond 16,384 levels), (inputs + 1,
        outputs); stochastic floating-point: omitted).
    """
    net = Lockstep(configs, backend)
    c0 = net.configs[0]
    x, y = load_split(c0, True)
    xt, yt = load_split(c0, False)
    x = x.cpu() if net.backend == "numba" else x
    gen = torch.Generator().manual_seed(int(c0.data_seed))
    K = len(configs)
    hist_acc, hist_err, hist_ev, times, lrs = [], [], [], [], []
    for epoch in tqdm(range(c0.epochs), desc=f"{K} networks", leave=False, disable=not progress):
        net.set_epoch(epoch)
        lrs.append(net.eta.copy())
        net.wrong[:] = 0
        net.events[:] = 0
        perm = torch.randperm(len(y), generator=gen).numpy()
        start = time.perf_counter()
        net.train(x, y, perm)
        times.append(time.perf_counter() - start)
        hist_err.append(100.0 * net.wrong / len(perm))
        hist_ev.append(net.events / len(perm))
        pred = net.predict(xt, seed=epoch)
        hist_acc.append(100.0 * (pred == yt).float().mean(1).cpu().numpy())
        if on_epoch is not None:
            on_epoch(epoch, net)
    acc, err, ev = np.stack(hist_acc, 1), np.stack(hist_err, 1), np.stack(hist_ev, 1)
    out = []
    for k, cfg in enumerate(configs):
        res: dict[str, Any] = {
            "test_acc": acc[k], "train_error": err[k], "lr": np.array([r[k] for r in lrs]),
            "events_per_image": ev[k], "epoch_time_s": np.array(times), "group_size": K,
            "train_s": float(net.train_s[k]),
            "images_per_s": float(len(y) * c0.epochs / max(net.train_s[k], 1e-9)),
            "best_test_acc": float(acc[k].max()), "final_test_acc": float(acc[k][-1]),
            "best_epoch": int(acc[k].argmax()) + 1,
        }
        if cfg.kind == "deterministic":
            res.update({f"w{i + 1}": w.cpu().numpy() for i, w in enumerate(net.weights()[k])})
        elif cfg.kind == "memristive":
            store_type = torch.float32 if cfg.levels <= 2 ** 14 else torch.float64
            res.update({f"weight_levels{i + 1}": net.layer_levels(k, i)[2].t().to(store_type)
                        .cpu().numpy() for i in range(3)})
        out.append(res)
    return out


def level_weights(levels: torch.Tensor, b_w: float) -> torch.Tensor:
    """Weights from conductance differences ``k+ - k-`` in level spacings: ``B_w (k+ - k-)``
    in float64, rounded once to float32 (the network's and the stored weights alike)."""
    return (levels.to(torch.float64) * b_w).to(torch.float32)


def stored_weights(entry_result: dict[str, Any], cfg: NetworkConfig) -> list[torch.Tensor]:
    """The final weights kept by a training run (deterministic or memristive networks), each
    (inputs + 1, outputs), bias last; memristive: the same float32 weights as
    :meth:`Lockstep.weights` of the trained network."""
    if cfg.kind == "deterministic":
        return [torch.as_tensor(entry_result[f"w{i}"]) for i in (1, 2, 3)]
    if cfg.kind == "memristive":
        if "weight_levels1" not in entry_result:
            raise ParameterError("stored_weights: this entry holds whole levels (level1..3) "
                                 "from before continuous programming noise; recompute it")
        return [level_weights(torch.as_tensor(entry_result[f"weight_levels{i}"]),
                              w / (cfg.levels - 1)) for i, w in zip((1, 2, 3), cfg.w_max)]
    raise ParameterError("stored_weights: stochastic floating-point runs keep no weights")


# --- groups of networks: cost and balance (for sweeps in parallel workers) --------------------


def relative_cost(cfg: NetworkConfig) -> float:
    """Rough training cost of one network per image, in units of a deterministic network; for
    balancing workers (it changes no result). Measured over whole `book`-size runs (MNIST, 30
    epochs) on the 2-core development machine: a memristive network (BL = 10) with exact
    resets costs about 1.5, with the noisy reset about 6 (a noisy reset draws one normal per
    synapse every ``reset_every`` images, about 16,000 normals per image at 15); a stochastic
    floating-point one 0.55 + 0.009 BL."""
    if cfg.kind == "deterministic":
        return 1.0
    if cfg.kind == "memristive":
        noisy = cfg.reset_noise and cfg.reset_every > 0 and cfg.sigma_over_b > 0
        return 1.3 + 0.02 * cfg.bl + (67.0 / cfg.reset_every if noisy else 0.0)
    return 0.55 + 0.009 * cfg.bl


def plan_groups(configs: Sequence[NetworkConfig], workers: int) -> list[list[NetworkConfig]]:
    """Split networks into at most ``workers`` groups per shared
    :meth:`NetworkConfig.group_key`, balancing :func:`relative_cost` (longest first, each to the
    lightest group); each group trains in one worker."""
    by_key: dict[tuple, list[NetworkConfig]] = {}
    for c in configs:
        by_key.setdefault(c.group_key(), []).append(c)
    groups: list[list[NetworkConfig]] = []
    for members in by_key.values():
        parts: list[list[NetworkConfig]] = [[] for _ in range(max(1, min(workers,
                                                                           len(members))))]
        for c in sorted(members, key=relative_cost, reverse=True):
            min(parts, key=lambda g: sum(map(relative_cost, g))).append(c)
        groups += [g for g in parts if g]
    return groups
