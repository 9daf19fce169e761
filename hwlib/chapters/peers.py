"""The chapter "hwlib and aihwkit": the same experiment in both libraries, measured side by side.

IBM's aihwkit is the reference simulator of analog in-memory training and inference. This
chapter puts hwlib beside it on one network (the ReLU MLP 784-256-256-10), one dataset
(Fashion-MNIST at the ``book`` profile) and one noise model, and measures where they agree and
where they differ. aihwkit is optional (the extra ``peers``, ``aihwkit==1.2.0``, which ships
wheels for Python 3.12): it is imported inside the functions that need it, and an experiment
that needs it and is not stored raises one line saying so (:func:`require_aihwkit`). Without
aihwkit the page is rendered from the stored results.

Sections, as in the other chapter modules:

* **aihwkit's side**: :func:`aihwkit_version`, :func:`require_aihwkit`, :func:`rpu_config`
  (every aihwkit configuration compared, built in one place), :func:`analog_linears`,
  :func:`effective_affine` (the weights a forward pass uses, probed);
* **configs**: :data:`NETS`, :func:`train_config`, :func:`build_network`;
* **stored experiments**: :func:`train_run` (a network trained by one library),
  :func:`robustness_run` (hwlib's test perturbations), :func:`pcm_run` (aihwkit's PCM-like
  noise with drift), :func:`equivalence_run` (the two noise definitions measured),
  :func:`timing_run` (step time and 32-instance evaluation, one run), :func:`three_lines_run`
  (the same example in both libraries, executed as shown);
* **sweeps to frames**: :func:`train_networks`, :func:`robustness`, :func:`pcm`,
  :func:`noise_table`, :func:`frequency_table`, :func:`timing_table`, :func:`seed_summary`;
* **claim readings**: :func:`readings_findings`.

The noise model both libraries share. hwlib (:mod:`hwlib.hardware.crossbar`) adds to every
crossbar entry ``nu ~ N(0, (sigma R)^2)``, ``R = max|W|`` (the range-matched bias column:
``b -> b + sigma max|b| z``). aihwkit's ``WeightModifierType.ADD_NORMAL`` with
``rel_to_actual_wmax=True`` adds ``std_dev * max|W_tile| * z`` to every weight of a tile in
training. They are the same distribution on the weights when a layer is one tile
(``MappingParameter(max_input_size=0, max_output_size=0)``) and the forward pass is ideal
(``IOParameters(is_perfect=True)``). They differ in the bias (digital and noise-free in
aihwkit by default) and in when a draw happens (aihwkit's C++ tile: at each
``AnalogOptimizer`` step; its torch tile: at every forward pass; hwlib: once per HA-SGD
sample).
"""

from __future__ import annotations

import copy
import functools
import math
import platform
import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DATASETS, load_dataset
from ..errors import HwlibError, ParameterError
from ..hardware.base import Ideal, attach
from ..hardware.crossbar import AnalogCrossbar, GaussianPerturbation, crossbar_layers
from ..methods.evaluation import accuracy, accuracy_on_chips
from ..methods.training import (HASGD, Standard, Step, cosine_schedule, fit,
                                steps_per_epoch)
from ..models.checkpoint import load_state_arrays, state_arrays
from ..models.mlp import MLP
from ..study.rules import Stat
from ..study.store import Entry, current_store, experiment

#: The aihwkit release this chapter was written and measured with (the extra ``peers``).
AIHWKIT_PIN = "1.2.0"
#: How to get it, in the one line an experiment raises without it.
INSTALL_HINT = "pip install -e '.[peers]' (aihwkit==1.2.0, wheels for Python 3.12)"
#: The networks compared: how each is trained.
NETS = {
    "standard": "standard training",
    "hwlib": "hwlib HA-SGD",
    "aihwkit": "aihwkit HWA, C++ tile",
    "aihwkit_torch": "aihwkit HWA, torch tile",
}
#: Seed of the first test chip; chip i uses INSTANCE_SEED + i for every network.
INSTANCE_SEED = 1
#: Images per forward pass in evaluations.
EVAL_BATCH = 1000
#: aihwkit's PCM-like device: the largest conductance, microsiemens (aihwkit's default).
G_MAX_US = 25.0
#: The drift time of the PCM row of the timing run: one day, seconds.
ONE_DAY_S = 86_400.0
#: How the drift times read on the page.
TIME_LABELS = {3_600.0: "1 hour", 86_400.0: "1 day", 31_536_000.0: "1 year"}
#: The keys of a training config that come from the notebook's parameters.
TRAIN_KNOBS = ("dataset", "hidden_widths", "n_train", "epochs", "batch_size", "lr")


# --- aihwkit's side ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def aihwkit_version() -> str | None:
    """The installed aihwkit's version, or None when it cannot be imported here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import aihwkit
    except Exception:  # noqa: BLE001 - not installed, or a wheel that does not load
        return None
    return str(getattr(aihwkit, "__version__", "unknown"))


def require_aihwkit(what: str) -> str:
    """aihwkit's version; raise one line naming ``what`` needs it when it is missing."""
    version = aihwkit_version()
    if version is None:
        raise HwlibError(f"{what} needs aihwkit, which cannot be imported here ({INSTALL_HINT}); "
                         "its stored result is missing or stale, so it must be recomputed")
    return version


def _aihwkit():
    """aihwkit's names this chapter uses (imported quietly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from aihwkit.inference import (BaseNoiseModel, GlobalDriftCompensation,
                                       PCMLikeNoiseModel)
        from aihwkit.nn import AnalogLinear
        from aihwkit.nn.conversion import convert_to_analog
        from aihwkit.optim import AnalogOptimizer
        from aihwkit.simulator.configs import InferenceRPUConfig, TorchInferenceRPUConfig
        from aihwkit.simulator.parameters import (IOParameters, MappingParameter,
                                                  WeightModifierParameter)
        from aihwkit.simulator.parameters.enums import WeightModifierType
    return dict(BaseNoiseModel=BaseNoiseModel, GlobalDriftCompensation=GlobalDriftCompensation,
                PCMLikeNoiseModel=PCMLikeNoiseModel, AnalogLinear=AnalogLinear,
                convert_to_analog=convert_to_analog, AnalogOptimizer=AnalogOptimizer,
                InferenceRPUConfig=InferenceRPUConfig,
                TorchInferenceRPUConfig=TorchInferenceRPUConfig, IOParameters=IOParameters,
                MappingParameter=MappingParameter,
                WeightModifierParameter=WeightModifierParameter,
                WeightModifierType=WeightModifierType)


#: The aihwkit configurations compared (:func:`rpu_config`).
TILES = ("cpp", "torch", "default")


def rpu_config(kind: str, std: float = 0.1, analog_bias: bool = False, one_tile: bool = True):
    """An aihwkit configuration of the comparison.

    Args:
        kind: ``"cpp"`` (``InferenceRPUConfig``, the C++ tile), ``"torch"``
            (``TorchInferenceRPUConfig``, the pure-torch tile), both with an ideal forward
            (``IOParameters(is_perfect=True)``: no DAC or ADC, no output noise, no bound
            management); or ``"default"``: ``InferenceRPUConfig()`` as it comes (7-bit DAC,
            9-bit ADC, output noise, noise and bound management, tiles of at most 512 x 512,
            no weight noise in training).
        std: the training noise, ``ADD_NORMAL`` with ``std`` times the tile's actual
            ``max|W|`` (0: none).
        analog_bias: the bias as an extra tile column with input 1 (C++ tile only; aihwkit's
            default is a digital, noise-free bias).
        one_tile: one tile per layer (``max_input_size = max_output_size = 0``), so that
            ``max|W|`` is the whole layer's as in hwlib; else aihwkit's default of 512 x 512.
    """
    if kind not in TILES:
        raise ParameterError(f"kind={kind!r}: must be one of {', '.join(TILES)}")
    A = _aihwkit()  # noqa: N806
    if kind == "default":
        return A["InferenceRPUConfig"]()
    cls = A["InferenceRPUConfig"] if kind == "cpp" else A["TorchInferenceRPUConfig"]
    cfg = cls()
    cfg.forward = A["IOParameters"](is_perfect=True)
    size = 0 if one_tile else 512
    cfg.mapping = A["MappingParameter"](digital_bias=not analog_bias, max_input_size=size,
                                        max_output_size=size)
    kind_of = A["WeightModifierType"]
    cfg.modifier = (A["WeightModifierParameter"](type=kind_of.ADD_NORMAL, std_dev=float(std),
                                                 rel_to_actual_wmax=True,
                                                 enable_during_test=False)
                    if std > 0 else A["WeightModifierParameter"](type=kind_of.NONE))
    return cfg


def convert(model: nn.Module, cfg) -> nn.Module:
    """``aihwkit.nn.conversion.convert_to_analog`` (a converted copy; ``model`` is kept)."""
    return _aihwkit()["convert_to_analog"](model, cfg)


def analog_linears(model: nn.Module) -> list[nn.Module]:
    """The ``AnalogLinear`` layers of a converted model, in module order."""
    cls = _aihwkit()["AnalogLinear"]
    return [m for m in model.modules() if isinstance(m, cls)]


def read_back(analog_model: nn.Module, model: nn.Module) -> nn.Module:
    """Copy the weights of a converted model (``get_weights``) into the plain network it was
    converted from, so that both libraries' networks are tested by the same code."""
    with torch.no_grad():
        for lin, al in zip(crossbar_layers(model), analog_linears(analog_model)):
            w, b = al.get_weights()
            lin.weight.copy_(w)
            if b is not None:
                lin.bias.copy_(b)
    return model.eval()


def effective_affine(layer: nn.Module, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` as a layer's forward pass computes them, probed with the inputs 0 and e_i in
    ONE batch (one forward, one draw): ``out(0) = b``, ``out(e_i) - out(0) = W[:, i]``.

    Works for ``torch.nn.Linear`` and aihwkit's ``AnalogLinear`` alike (with an ideal forward
    the probe is exact).
    """
    n = layer.in_features
    probe = torch.cat([torch.zeros(1, n), torch.eye(n)])
    layer.train(train)
    with torch.no_grad():
        out = layer(probe)
    b = out[0]
    return (out[1:] - b).t().contiguous(), b.clone()


def gaussian_noise_model(std: float):
    """hwlib's chip as an aihwkit inference noise model: programming adds
    ``N(0, (std max|W_tile|)^2)`` to every weight of a tile; no drift."""
    return _gaussian_class()(std)


@functools.lru_cache(maxsize=1)
def _gaussian_class():
    base = _aihwkit()["BaseNoiseModel"]

    class GaussianNoiseModel(base):
        """Programming noise ``std * max|W_tile| * z``; no drift, no read noise."""

        def __init__(self, std: float) -> None:
            super().__init__()
            self.std = float(std)

        def apply_programming_noise(self, weights):  # noqa: D102
            return weights + self.std * weights.abs().max() * torch.randn_like(weights), []

        def apply_drift_noise(self, weights, drift_noise_parameters, t_inference):  # noqa: D102
            return weights

    return GaussianNoiseModel


def inference_config(kind: str, noise: str, std: float = 0.1, g_max: float = G_MAX_US):
    """An aihwkit configuration for testing: no training noise; ``noise="gaussian"`` (hwlib's
    chip, :func:`gaussian_noise_model`, no drift compensation) or ``"pcm"``
    (``PCMLikeNoiseModel(g_max)`` with ``GlobalDriftCompensation``)."""
    A = _aihwkit()  # noqa: N806
    cfg = rpu_config(kind, std=0.0)
    if noise == "gaussian":
        cfg.noise_model = gaussian_noise_model(std)
        cfg.drift_compensation = None
    elif noise == "pcm":
        cfg.noise_model = A["PCMLikeNoiseModel"](g_max=float(g_max))
        cfg.drift_compensation = A["GlobalDriftCompensation"]()
    else:
        raise ParameterError(f"noise={noise!r}: must be gaussian or pcm")
    return cfg


# --- configs ----------------------------------------------------------------------------------


def crossbar(sigma: float) -> AnalogCrossbar:
    """hwlib's side of the comparison: ``hwlib.presets.hasgd_crossbar(sigma)``, the HA-SGD
    poster's crossbars (noise ``sigma`` times each crossbar's ``max|W|``, range-matched bias
    column, no ADC)."""
    return AnalogCrossbar(GaussianPerturbation(float(sigma)), "range")



def train_config(params: Any, net: str, seed: int) -> dict[str, Any]:
    """The full config of one network: the notebook's training knobs, how it is trained
    (``net``, one of :data:`NETS`) and its seed (initial weights, shuffling, noise draws)."""
    if net not in NETS:
        raise ParameterError(f"net={net!r}: must be one of {', '.join(NETS)}")
    cfg = {k: getattr(params, k) for k in TRAIN_KNOBS}
    cfg.update(net=net, train_sigma=0.0 if net == "standard" else float(params.train_sigma),
               seed=int(seed))
    return cfg


def networks(params: Any) -> list[dict[str, Any]]:
    """Every network of the chapter: each of ``nets`` for each of ``train_seeds`` seeds."""
    return [train_config(params, net, params.seed + s) for s in range(params.train_seeds)
            for net in params.nets]


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """The chapter's ReLU MLP for the config's dataset (a digital input normalization, then
    one Linear layer per crossbar), initialized from torch's global generator."""
    info = DATASETS[config["dataset"]]
    return MLP(info.shape, tuple(config["hidden_widths"]), info.classes, (info.mean, info.std))


def _seeded_network(config: Mapping[str, Any]) -> nn.Module:
    torch.manual_seed(int(config["seed"]))
    return build_network(config)


# --- stored experiments -------------------------------------------------------------------------


def _train_aihwkit(config: Mapping[str, Any], x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[nn.Module, dict[str, Any]]:
    """aihwkit's hardware-aware training of the same network with the same recipe: the same
    initial weights, shuffling (:func:`hwlib.fit`'s), Adam, cosine schedule."""
    A = _aihwkit()  # noqa: N806
    seed = int(config["seed"])
    model = _seeded_network(config)
    kind = "cpp" if config["net"] == "aihwkit" else "torch"
    am = convert(model, rpu_config(kind, config["train_sigma"]))
    opt = A["AnalogOptimizer"](torch.optim.Adam, am.parameters(), lr=config["lr"])
    bs, epochs = config["batch_size"], config["epochs"]
    sched = cosine_schedule(opt, epochs, steps_per_epoch(len(y), bs))
    torch.manual_seed(seed)                  # the torch tile draws from torch's generator
    gen = torch.Generator().manual_seed(seed)
    times, losses = [], []
    for _ in range(epochs):
        am.train()
        start = time.perf_counter()
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), bs):
            idx = perm[i:i + bs]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(am(x[idx]), y[idx])
            loss.backward()
            opt.step()                       # AnalogOptimizer: also the C++ tile's next draw
            sched.step()
            total += float(loss.detach()) * len(idx)
        times.append(time.perf_counter() - start)
        losses.append(total / len(y))
    am.eval()
    read_back(am, model)
    probe = x[:256]
    with torch.no_grad():
        gap = float((am(probe) - model(probe)).abs().max())
    return model, {"epoch_time_s": np.array(times), "train_loss": np.array(losses),
                   "readback_gap": gap}


@experiment("peers.train_run", outputs=("epoch_time_s", "train_loss", "parameters", "library"))
def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train one network, by hwlib or by aihwkit, and keep its weights.

    Args:
        config: see :func:`train_config`: the data (``dataset``, ``n_train``), the network
            (``hidden_widths``), Adam with cosine decay to zero (``lr``, ``batch_size``,
            ``epochs``), ``net`` (``standard``: hwlib's :class:`~hwlib.Standard`; ``hwlib``:
            :class:`~hwlib.HASGD` with L = 1 on ``hasgd_crossbar(train_sigma)``; ``aihwkit``
            and ``aihwkit_torch``: aihwkit's ``ADD_NORMAL`` training at ``train_sigma`` on its
            C++ or torch tile, see :func:`rpu_config`) and ``seed``.

    Returns:
        The state dict of the plain network (``state.<name>``; aihwkit's weights read back
        with ``get_weights``), ``epoch_time_s``, ``train_loss`` (per epoch), ``parameters``,
        ``library`` (which trained it, with its version) and, for aihwkit, ``readback_gap``
        (the largest difference of the logits of the analog and the read-back network on 256
        training images).
    """
    seed = int(config["seed"])
    x, y = load_dataset(config["dataset"], True, config["n_train"], seed)
    if config["net"].startswith("aihwkit"):
        version = require_aihwkit(f"training the {NETS[config['net']]} network")
        model, extra = _train_aihwkit(config, x, y)
        library = f"aihwkit {version}"
    else:
        model = _seeded_network(config)
        opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
        sched = cosine_schedule(opt, config["epochs"],
                                steps_per_epoch(len(y), config["batch_size"]))
        if config["net"] == "hwlib":
            hw, method = crossbar(config["train_sigma"]), HASGD(1)
        else:
            hw, method = Ideal(), Standard()
        step = Step(model, opt, hw, method, generator=torch.Generator().manual_seed(seed))
        hist = fit(step, x, y, config["epochs"], config["batch_size"], seed, sched,
                   desc=f"{config['net']} seed {seed}")
        extra = {"epoch_time_s": np.array(hist["epoch_time_s"]),
                 "train_loss": np.array(hist["loss"])}
        library = "hwlib"
    return {**state_arrays(model.eval()), **extra, "library": library,
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def network_from(result: Mapping[str, Any], config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a trained network from a :func:`train_run` result (in eval mode)."""
    return load_state_arrays(build_network(config), result).eval()


def _trained(config: Mapping[str, Any]) -> nn.Module:
    """The trained network of a test config (trained now if the store lacks it)."""
    store = current_store(config["profile"])
    entry = store.get_or_compute(train_run, config["train"])
    return network_from(entry.result, config["train"])


def _test_set(config: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    tc = config["train"]
    return load_dataset(tc["dataset"], False, config["n_test"], 0)


@experiment("peers.robustness_run", outputs=("accuracy",))
def robustness_run(config: dict[str, Any]) -> dict[str, Any]:
    """Test one trained network under hwlib's perturbation at every test level.

    Args:
        config: ``train`` (the network's training config), ``profile`` (whose store holds
            it), ``test_sigmas`` (p, a fraction of each crossbar's dynamic range),
            ``instances`` (chips per level; chip i from seed ``INSTANCE_SEED + i`` at every
            level, for every network), ``n_test`` (test images, the same for every network).

    Returns:
        ``accuracy``: fractions, shape (levels, instances).
    """
    model = _trained(config)
    xt, yt = _test_set(config)
    seeds = [INSTANCE_SEED + i for i in range(config["instances"])]
    return {"accuracy": np.stack([
        accuracy_on_chips(model, crossbar(p), xt, yt, seeds, EVAL_BATCH)
        for p in config["test_sigmas"]])}


@experiment("peers.pcm_run", outputs=("accuracy", "aihwkit"))
def pcm_run(config: dict[str, Any]) -> dict[str, Any]:
    """Test one trained network under aihwkit's own device physics: ``PCMLikeNoiseModel``
    (programming noise, conductance drift, 1/f read noise; ``g_max`` microsiemens) with
    ``GlobalDriftCompensation``.

    Each instance is programmed once (``program_analog_weights``, seeded through torch's
    generator) and then read at every drift time (``drift_analog_weights(t)``).

    Args:
        config: ``train``, ``profile``, ``drift_times`` (seconds after programming),
            ``instances``, ``n_test``, ``g_max``, ``periphery`` (``ideal``: one tile per
            layer, ideal forward, digital bias, only the devices noisy; ``default``:
            aihwkit's ``InferenceRPUConfig()`` periphery, 7-bit DAC, 9-bit ADC, output noise,
            512 x 512 tiles).

    Returns:
        ``accuracy``: fractions, shape (drift times, instances); ``aihwkit``: its version.
    """
    version = require_aihwkit("testing under aihwkit's PCM-like noise model")
    model = _trained(config)
    xt, yt = _test_set(config)
    A = _aihwkit()  # noqa: N806
    if config["periphery"] == "ideal":
        cfg = inference_config("cpp", "pcm", g_max=config["g_max"])
    elif config["periphery"] == "default":
        cfg = rpu_config("default")
        cfg.noise_model = A["PCMLikeNoiseModel"](g_max=float(config["g_max"]))
        cfg.drift_compensation = A["GlobalDriftCompensation"]()
    else:
        raise ParameterError(f"periphery={config['periphery']!r}: must be ideal or default")
    am = convert(model, cfg).eval()
    out = np.zeros((len(config["drift_times"]), config["instances"]))
    for i in range(config["instances"]):
        torch.manual_seed(INSTANCE_SEED + i)
        am.program_analog_weights()
        for k, t in enumerate(config["drift_times"]):
            am.drift_analog_weights(float(t))
            out[k, i] = accuracy(am, xt, yt, EVAL_BATCH)
    return {"accuracy": out, "aihwkit": version}


# --- the two noise definitions, measured ----------------------------------------------------------


#: The training-noise configurations measured by :func:`equivalence_run`, in table order.
NOISE_CONFIGS = {
    "hwlib": "hwlib hasgd_crossbar (range-matched bias column)",
    "cpp": "aihwkit C++ tile",
    "torch": "aihwkit torch tile",
    "cpp_analog_bias": "aihwkit C++ tile, analog bias",
    "cpp_512": "aihwkit C++ tile, default 512 x 512 tiles",
}


def _hwlib_draws(model: nn.Module, sigma: float, draws: int) -> tuple[list, list]:
    """Per layer: the reference ``(W, b)`` and the ``(dW, db)`` of ``draws`` hwlib chips."""
    hw = crossbar(sigma)
    layers = crossbar_layers(model)
    ref = [effective_affine(layer, train=False) for layer in layers]
    out: list[list] = [[] for _ in layers]
    for s in range(draws):
        with attach(model, hw, seed=s):
            for i, layer in enumerate(layers):
                w, b = effective_affine(layer, train=False)
                out[i].append((w - ref[i][0], b - ref[i][1]))
    return ref, out


def _aihwkit_draws(model: nn.Module, key: str, sigma: float, draws: int, seed: int = 0
                   ) -> tuple[list, list]:
    """Per layer: the reference ``(W, b)`` and the ``(dW, db)`` of ``draws`` draws of the
    training noise of an aihwkit tile (a new draw: the C++ tile's ``post_update_step``, what
    ``AnalogOptimizer.step`` calls; the torch tile draws at every forward)."""
    kind = "torch" if key == "torch" else "cpp"
    torch.manual_seed(seed)
    am = convert(model, rpu_config(kind, sigma, analog_bias=key == "cpp_analog_bias",
                                   one_tile=key != "cpp_512"))
    layers = analog_linears(am)
    ref = [effective_affine(layer, train=False) for layer in layers]
    out: list[list] = [[] for _ in layers]
    for _ in range(draws):
        if kind == "cpp":
            for layer in layers:
                for tile in layer.analog_tiles():
                    tile.post_update_step()
        for i, layer in enumerate(layers):
            w, b = effective_affine(layer, train=True)
            out[i].append((w - ref[i][0], b - ref[i][1]))
    return ref, out


def _noise_stats(ref: list, draws: list) -> dict[str, np.ndarray]:
    """Per layer: ``std(dW)/max|W|``, ``mean(dW)/max|W|``, ``std(db)/max|b|``,
    ``std(db)/max|[W b]|``, and whether the bias never moved."""
    rows: dict[str, list[float]] = {k: [] for k in ("std_w", "mean_w", "std_b_maxb",
                                                   "std_b_maxwb", "bias_still")}
    for (w0, b0), ds in zip(ref, draws):
        dw = torch.stack([d[0] for d in ds])
        db = torch.stack([d[1] for d in ds])
        wmax, bmax = float(w0.abs().max()), float(b0.abs().max())
        rows["std_w"].append(float(dw.std()) / wmax)
        rows["mean_w"].append(float(dw.mean()) / wmax)
        rows["std_b_maxb"].append(float(db.std()) / bmax)
        rows["std_b_maxwb"].append(float(db.std()) / max(wmax, bmax))
        rows["bias_still"].append(float(bool((db == 0).all())))
    return {k: np.array(v) for k, v in rows.items()}


def _last_layer_outputs(model: nn.Module) -> tuple[list[torch.Tensor], Any]:
    outs: list[torch.Tensor] = []
    last = [m for m in model.modules() if isinstance(m, nn.Linear)
            or type(m).__name__ == "AnalogLinear"][-1]
    handle = last.register_forward_hook(lambda _m, _i, o: outs.append(o.detach().clone()))
    return outs, handle


def draw_frequency(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float
                   ) -> dict[str, dict[str, int]]:
    """When each library draws its training noise, counted on one mini-batch of ``x`` whose
    first two images are the same image (equal outputs there: one draw shared by the batch).

    hwlib: chips drawn and forward passes per HA-SGD step, L = 1 and L = 4, and whether the L
    passes of a step saw different draws. aihwkit: whether the training forward is noisy
    before the first optimizer step, whether two forward passes in one mini-batch differ,
    whether the next mini-batch's differs, and whether a plain torch optimizer (not
    ``AnalogOptimizer``) ever draws again. Values are 1 (yes) or 0 (no), or counts.
    """
    xb = torch.cat([x[:1], x[:1], x[1:64]])
    yb = torch.cat([y[:1], y[:1], y[1:64]])
    res: dict[str, dict[str, int]] = {}
    with torch.no_grad():
        clean = model.eval()(xb)
    for samples in (1, 4):
        m = copy.deepcopy(model)
        hw = crossbar(sigma)
        # learning rate 0: the weights stay put, so any change of output is a new draw
        step = Step(m, torch.optim.Adam(m.parameters(), lr=0.0), hw, HASGD(samples),
                    generator=torch.Generator().manual_seed(0))
        bars = hw.crossbars(m)
        calls = [0]
        original = bars.perturb

        def counted(*args, _orig=original, **kwargs):
            calls[0] += 1
            return _orig(*args, **kwargs)

        bars.perturb = counted
        outs, handle = _last_layer_outputs(m)
        try:
            step(xb, yb)
            per_step = calls[0]
            step(xb, yb)
        finally:
            handle.remove()
            bars.perturb = original
        first, second = outs[0], outs[samples]
        res[f"hwlib, L = {samples}"] = {
            "draws_per_step": per_step, "forwards_per_step": len(outs) // 2,
            "forwards_differ": int(samples > 1 and not torch.equal(outs[0], outs[1])),
            "one_draw_per_batch": int(torch.equal(first[0], first[1])),
            "noisy_before_first_step": int(not torch.allclose(first, clean)),
            "differs_after_step": int(not torch.equal(first, second)),
            # hwlib draws in the step, whatever torch optimizer it drives
            "redraws_with_plain_optimizer": int(not torch.equal(first, second))}
    A = _aihwkit()  # noqa: N806
    for kind in ("cpp", "torch"):
        am = convert(model, rpu_config(kind, sigma))
        opt = A["AnalogOptimizer"](torch.optim.Adam, am.parameters(), lr=1e-3)
        am.train()
        first = am(xb).detach()
        am.eval()
        clean = am(xb).detach()
        am.train()
        o1, o2 = am(xb), am(xb)
        loss = F.cross_entropy(o1, yb) + F.cross_entropy(o2, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        o3 = am(xb).detach()
        plain = convert(model, rpu_config(kind, sigma))
        popt = torch.optim.Adam(plain.parameters(), lr=0.0)
        plain.train()
        p1 = plain(xb)
        F.cross_entropy(p1, yb).backward()
        popt.step()
        p2 = plain(xb).detach()
        res[f"aihwkit {kind} tile"] = {
            "noisy_before_first_step": int(not torch.allclose(first, clean)),
            "forwards_differ": int(not torch.equal(o1.detach(), o2.detach())),
            "differs_after_step": int(not torch.equal(o2.detach(), o3)),
            "one_draw_per_batch": int(torch.equal(o1[0], o1[1])),
            "redraws_with_plain_optimizer": int(not torch.equal(p1.detach(), p2))}
    return res


def seeding(model: nn.Module, sigma: float) -> dict[str, int]:
    """Whether the same seed gives the same training-noise draw: hwlib (a chip's seed),
    aihwkit's torch tile (``torch.manual_seed``) and its C++ tile (RPUCuda's own generator,
    which the Python API does not seed). 1 yes, 0 no."""
    out = {}
    for key in ("cpp", "torch"):
        a = _aihwkit_draws(model, key, sigma, 1, seed=5)[1][0][0][0]
        b = _aihwkit_draws(model, key, sigma, 1, seed=5)[1][0][0][0]
        out[f"aihwkit {key} tile"] = int(torch.equal(a, b))
    hw = crossbar(sigma)
    layer = crossbar_layers(model)[0]
    draws = []
    for _ in range(2):  # a crossbar chip draws its perturbation from its seed when attached
        with attach(model, hw, seed=5):
            draws.append(layer.weight.detach().clone())
    out["hwlib"] = int(torch.equal(draws[0], draws[1]))
    return out


@experiment("peers.equivalence_run", outputs=("configs", "std_w", "bias_still", "frequency",
                                               "seeding", "aihwkit"))
def equivalence_run(config: dict[str, Any]) -> dict[str, Any]:
    """The two noise definitions measured on a trained network (whose biases are no longer at
    their initial values, so that ``max|b|`` and ``max|W|`` differ).

    Args:
        config: ``train`` (the network's training config), ``profile``, ``train_sigma`` (the
            training noise of both libraries), ``draws`` (draws of each configuration).

    Returns:
        ``configs`` (keys of :data:`NOISE_CONFIGS`), ``shapes`` (each layer's), and arrays
        (configs x layers) ``std_w`` (``std(dW)/max|W|``), ``mean_w``, ``std_b_maxb``
        (``std(db)/max|b|``), ``std_b_maxwb`` (``std(db)/max|[W b]|``), ``bias_still`` (1: the bias
        never moved); ``frequency`` (:func:`draw_frequency`), ``seeding`` (:func:`seeding`),
        ``aihwkit`` (its version).
    """
    version = require_aihwkit("measuring aihwkit's training noise")
    model = _trained(config)
    sigma, draws = float(config["train_sigma"]), int(config["draws"])
    stats = {}
    for key in NOISE_CONFIGS:
        ref, ds = (_hwlib_draws(model, sigma, draws) if key == "hwlib"
                   else _aihwkit_draws(model, key, sigma, draws))
        stats[key] = _noise_stats(ref, ds)
    x, y = load_dataset(config["train"]["dataset"], True, 64, 0)
    out: dict[str, Any] = {name: np.stack([stats[k][name] for k in NOISE_CONFIGS])
                           for name in next(iter(stats.values()))}
    out.update(configs=list(NOISE_CONFIGS),
               shapes=["x".join(map(str, layer.weight.shape))
                       for layer in crossbar_layers(model)],
               frequency=draw_frequency(model, x, y, sigma), seeding=seeding(model, sigma),
               aihwkit=version)
    return out


# --- time: a training step and 32 instances, both libraries in one run ---------------------------


def _plain_step(model: nn.Module, lr: float):
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return step


def aihwkit_step(model: nn.Module, cfg, lr: float):
    """A converted copy of ``model`` and its training step (Adam through ``AnalogOptimizer``)."""
    am = convert(model, cfg)
    opt = _aihwkit()["AnalogOptimizer"](torch.optim.Adam, am.parameters(), lr=lr)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(am(xb), yb).backward()
        opt.step()  # AnalogOptimizer: also post_update_step (the C++ tile's next draw)
    return am, step


def _round_robin(rows: Sequence[tuple[str, Any]], blocks: Any, rounds: int) -> np.ndarray:
    """Time every row on the same blocks, round-robin (the order reversed every other round),
    after one warm-up block each; seconds, shape (rows, rounds)."""
    for _, fn in rows:
        fn(blocks(0))
    out = np.zeros((len(rows), rounds))
    for r in range(rounds):
        order = list(range(len(rows))) if r % 2 == 0 else list(range(len(rows)))[::-1]
        for i in order:
            start = time.perf_counter()
            rows[i][1](blocks(r + 1))
            out[i, r] = time.perf_counter() - start
    return out


def _ratios(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: median time over the baseline's (row 0), and the median of the per-round
    ratios (paired: robust to machine load drifting during the run)."""
    med = np.median(times, axis=1)
    return med / med[0], np.median(times / times[0], axis=1)


def _cpu() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@experiment("peers.timing_run", outputs=("step_names", "step_s", "instance_names",
                                          "instance_s", "aihwkit"))
def timing_run(config: dict[str, Any]) -> dict[str, Any]:
    """A training step and a 32-instance evaluation in both libraries, timed in ONE run.

    Same network (the chapter's MLP), same mini-batches (``batch_size`` images, shuffled from
    the training set), Adam, one torch thread. Step rows: plain torch (the baseline), hwlib
    HA-SGD (L = 1, ``train_sigma``), aihwkit's C++ and torch tiles (``ADD_NORMAL``, ideal
    forward, one tile per layer, digital bias), aihwkit's default ``InferenceRPUConfig()``.
    Instance rows (``timing_instances`` chips on ``timing_images`` test images, ``EVAL_BATCH``
    images per forward): clean passes of the torch network (the baseline), hwlib
    (:func:`~hwlib.accuracy_on_chips` on ``hasgd_crossbar(train_sigma)``), aihwkit's torch and
    C++ tiles programmed with the same Gaussian noise (:func:`gaussian_noise_model`), and
    aihwkit's PCM-like noise with one day of drift (C++ tile).

    Every row is timed on the same data, round-robin: ``step_rounds`` rounds of
    ``timing_steps`` steps, ``instance_rounds`` rounds of all instances, after a warm-up.

    Returns:
        ``step_names``, ``step_s`` (seconds per step, rows x rounds), ``instance_names``,
        ``instance_s`` (seconds per evaluation of all instances, rows x rounds), ``cpu``,
        ``aihwkit``.
    """
    version = require_aihwkit("timing aihwkit")
    seed, lr, sigma = int(config["seed"]), float(config["lr"]), float(config["train_sigma"])
    bs, steps = int(config["batch_size"]), int(config["timing_steps"])
    x, y = load_dataset(config["dataset"], True, config["n_train"], seed)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    nb = max(1, len(y) // bs)

    def blocks(k: int):
        out = []
        for j in range(steps):
            i = (k * steps + j) % nb
            idx = perm[i * bs:(i + 1) * bs]
            out.append((x[idx], y[idx]))
        return out

    def stepping(fn, model):
        def run(batches):
            model.train()
            for xb, yb in batches:
                fn(xb, yb)
        return run

    net = dict(config, seed=seed)
    step_rows = []
    m = _seeded_network(net)
    step_rows.append(("plain torch", stepping(_plain_step(m, lr), m)))
    m = _seeded_network(net)
    hs = Step(m, torch.optim.Adam(m.parameters(), lr=lr), crossbar(sigma),
              HASGD(1), generator=torch.Generator().manual_seed(seed))
    step_rows.append(("hwlib HA-SGD", stepping(hs, m)))
    for name, cfg in (("aihwkit C++ tile", rpu_config("cpp", sigma)),
                      ("aihwkit torch tile", rpu_config("torch", sigma)),
                      ("aihwkit default InferenceRPUConfig()", rpu_config("default"))):
        am, fn = aihwkit_step(_seeded_network(net), cfg, lr)
        step_rows.append((name, stepping(fn, am)))
    step_s = _round_robin(step_rows, blocks, int(config["step_rounds"])) / steps

    xt, yt = load_dataset(config["dataset"], False, config["timing_images"], 0)
    model = _seeded_network(net).eval()
    seeds = [INSTANCE_SEED + i for i in range(config["timing_instances"])]
    hw = crossbar(sigma)

    def clean(_):
        for _s in seeds:
            accuracy(model, xt, yt, EVAL_BATCH)

    def hwlib_chips(_):  # each chip draws its perturbation when attached
        accuracy_on_chips(model, hw, xt, yt, seeds, EVAL_BATCH)

    def aihwkit_chips(am, drift: float | None):
        am.eval()

        def run(_):
            for s in seeds:
                torch.manual_seed(s)
                am.program_analog_weights()
                if drift is not None:
                    am.drift_analog_weights(drift)
                accuracy(am, xt, yt, EVAL_BATCH)
        return run

    instance_rows = [
        ("clean passes", clean), ("hwlib", hwlib_chips),
        ("aihwkit torch tile", aihwkit_chips(
            convert(model, inference_config("torch", "gaussian", sigma)), None)),
        ("aihwkit C++ tile", aihwkit_chips(
            convert(model, inference_config("cpp", "gaussian", sigma)), None)),
        ("aihwkit PCM-like, 1 day of drift", aihwkit_chips(
            convert(model, inference_config("cpp", "pcm", g_max=config["g_max"])),
            ONE_DAY_S)),
    ]
    instance_s = _round_robin(instance_rows, lambda _k: None, int(config["instance_rounds"]))
    return {"step_names": [n for n, _ in step_rows], "step_s": step_s,
            "instance_names": [n for n, _ in instance_rows], "instance_s": instance_s,
            "cpu": _cpu(), "aihwkit": version}


# --- the same three lines in both libraries ---------------------------------------------------

#: What both examples start from (not shown on the page): ``model`` (the chapter's MLP),
#: ``x, y`` and ``xt, yt`` (training and test images), ``batches`` (mini-batches of 1024),
#: ``accuracy`` (:func:`hwlib.accuracy`), ``torch``, ``F`` and ``Adam``.
EXAMPLE_HWLIB = """\
import hwlib

hw = hwlib.presets.hasgd_crossbar(sigma=0.1)                            # 1. the hardware
hwlib.fit(hwlib.Step(model, Adam(model.parameters(), lr=3e-3), hw, hwlib.HASGD()),
          x, y, epochs=1, batch_size=1024)                             # 2. train on its chips
acc = hwlib.accuracy_on_chips(model, hw, xt, yt, seeds=range(10))      # 3. test on 10 chips
"""

EXAMPLE_AIHWKIT = """\
from aihwkit.nn.conversion import convert_to_analog
from aihwkit.optim import AnalogOptimizer
from aihwkit.simulator.configs import InferenceRPUConfig
from aihwkit.simulator.parameters import IOParameters, MappingParameter, WeightModifierParameter
from aihwkit.simulator.parameters.enums import WeightModifierType

am = convert_to_analog(model, InferenceRPUConfig(                       # 1. the hardware
    forward=IOParameters(is_perfect=True), mapping=MappingParameter(max_input_size=0,
    max_output_size=0), modifier=WeightModifierParameter(type=WeightModifierType.ADD_NORMAL,
    std_dev=0.1, rel_to_actual_wmax=True)))
opt = AnalogOptimizer(Adam, am.parameters(), lr=3e-3)                   # 2. train with its noise
for xb, yb in batches: opt.zero_grad(); F.cross_entropy(am(xb), yb).backward(); opt.step()
am.eval(); am.program_analog_weights(); am.drift_analog_weights(86400)  # 3. one PCM chip, 1 day
acc = accuracy(am, xt, yt)
"""


def example_namespace(config: Mapping[str, Any]) -> dict[str, Any]:
    """The shared set-up of the two examples (see :data:`EXAMPLE_HWLIB`)."""
    seed = int(config["seed"])
    x, y = load_dataset(config["dataset"], True, config["n_train"], seed)
    xt, yt = load_dataset(config["dataset"], False, config["n_test"], 0)
    return {"model": _seeded_network(config), "x": x, "y": y, "xt": xt, "yt": yt,
            "batches": [(x[i:i + 1024], y[i:i + 1024]) for i in range(0, len(y), 1024)],
            "accuracy": accuracy, "torch": torch, "F": F, "Adam": torch.optim.Adam}


def run_example(code: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Execute one example as written on the page; returns its namespace."""
    namespace = example_namespace(config)
    exec(compile(code, "<example>", "exec"), namespace)  # noqa: S102 - this module's own text
    return namespace


@experiment("peers.three_lines_run", outputs=("hwlib_acc", "aihwkit_acc", "aihwkit"))
def three_lines_run(config: dict[str, Any]) -> dict[str, Any]:
    """The page's example in both libraries, executed exactly as shown.

    Args:
        config: ``dataset``, ``hidden_widths``, ``n_train``, ``n_test``, ``seed`` (the same
            initial weights for both).

    Returns:
        ``hwlib_acc`` (accuracy on each of the 10 chips), ``aihwkit_acc`` (one PCM-like chip
        after a day), the wall time of each example, ``aihwkit`` (its version).
    """
    version = require_aihwkit("the aihwkit example")
    out: dict[str, Any] = {"aihwkit": version}
    for name, code in (("hwlib", EXAMPLE_HWLIB), ("aihwkit", EXAMPLE_AIHWKIT)):
        torch.manual_seed(int(config["seed"]))
        start = time.perf_counter()
        ns = run_example(code, config)
        out[f"{name}_s"] = time.perf_counter() - start
        out[f"{name}_acc"] = np.atleast_1d(np.asarray(ns["acc"], dtype=float))
    return out


# --- sweeps to frames ---------------------------------------------------------------------------


def _workers(session) -> int | None:
    """Parallel workers: one per core at the book profile; none at smoke."""
    return 1 if session.profile == "smoke" else None


def train_networks(session, configs: Sequence[Mapping[str, Any]]) -> list[Entry]:
    """Train (or read back) every network, in parallel workers, one torch thread each."""
    from ..study.sweep import run_sweep

    return run_sweep(train_run, configs, session.store, desc="training in both libraries",
                     workers=_workers(session))


def _tests(session, configs, **extra) -> list[dict[str, Any]]:
    return [{"train": dict(c), "profile": session.profile, **extra} for c in configs]


def robustness(session, configs: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame,
                                                                        list[Entry]]:
    """Every network under hwlib's perturbation: one row per network, level and chip
    (``accuracy`` in percent)."""
    from ..study.sweep import run_sweep

    p = session.p
    evals = _tests(session, configs, test_sigmas=[float(s) for s in p.test_sigmas],
                   instances=int(p.instances), n_test=p.n_test)
    entries = run_sweep(robustness_run, evals, session.store, desc="hwlib's test chips",
                        workers=_workers(session))
    return _accuracy_rows(configs, entries, p.test_sigmas), entries


def pcm(session, configs: Sequence[Mapping[str, Any]], periphery: str
        ) -> tuple[pd.DataFrame, list[Entry]]:
    """Every network under aihwkit's PCM-like noise with drift: one row per network, drift
    time and instance (``accuracy`` in percent)."""
    from ..study.sweep import run_sweep

    p = session.p
    evals = _tests(session, configs, drift_times=[float(t) for t in p.drift_times],
                   instances=int(p.instances), n_test=p.n_test, g_max=G_MAX_US,
                   periphery=periphery)
    entries = run_sweep(pcm_run, evals, session.store, desc=f"PCM-like, {periphery} periphery",
                        workers=_workers(session))
    return _accuracy_rows(configs, entries, p.drift_times), entries


def _accuracy_rows(configs: Sequence[Mapping[str, Any]], entries: Sequence[Entry],
                   levels: Sequence[float]) -> pd.DataFrame:
    """One row per network, level and chip of stored ``accuracy[level, chip]`` arrays."""
    rows = []
    for c, e in zip(configs, entries):
        acc = np.asarray(e["accuracy"])
        for j, level in enumerate(levels):
            for i in range(acc.shape[1]):
                rows.append({"net": c["net"], "seed": c["seed"], "level": float(level),
                             "instance": i, "accuracy": 100 * float(acc[j, i])})
    return pd.DataFrame(rows)


def seed_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per network and level: the mean over seeds of each seed's mean over chips, its standard
    error over seeds (NaN for one seed), the seeds, and the mean spread over chips."""
    per_seed = table.groupby(["net", "level", "seed"]).accuracy.agg(["mean", "std"])
    out = per_seed.groupby(["net", "level"]).agg(
        mean=("mean", "mean"),
        se=("mean", lambda v: v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan),
        seeds=("mean", "size"), chip_sd=("std", "mean")).reset_index()
    return out


def stat(summary: pd.DataFrame, net: str, level: float) -> Stat:
    """The summary of one network at one level as a :class:`~hwlib.study.rules.Stat` (NaN
    when it was not measured)."""
    row = summary[(summary.net == net) & np.isclose(summary.level, level)]
    if row.empty:
        return Stat(math.nan, math.nan, 0)
    r = row.iloc[0]
    return Stat(float(r["mean"]), float(r["se"]), int(r["seeds"]))


def wide(summary: pd.DataFrame, nets: Sequence[str], label: str, levels=None) -> pd.DataFrame:
    """A summary as a table for the page: one row per level, one column per network,
    ``mean ± SE``."""
    t = summary.assign(cell=[f"{m:.2f} ± {s:.2f}" if not math.isnan(s) else f"{m:.2f}"
                             for m, s in zip(summary["mean"], summary["se"])])
    out = t.pivot(index="level", columns="net", values="cell")[list(nets)]
    out.columns = [NETS[n] for n in nets]
    if levels is not None:
        out.index = [levels(v) for v in out.index]
    out.index.name = label
    return out


def loss_table(configs: Sequence[Mapping[str, Any]], entries: Sequence[Entry]) -> pd.DataFrame:
    """The final training loss (mean over the last epoch) of every network: one row per
    network, one column per training seed."""
    rows = [{"net": NETS[c["net"]], "seed": c["seed"], "loss": float(e["train_loss"][-1])}
            for c, e in zip(configs, entries)]
    t = pd.DataFrame(rows).pivot(index="net", columns="seed", values="loss")
    t = t.loc[[NETS[n] for n in NETS if NETS[n] in t.index]]
    t.columns = [f"seed {s}" for s in t.columns]
    t.index.name = "final training loss"
    return t


def time_label(seconds: float) -> str:
    """A drift time in words (``1 day``), or in seconds."""
    return TIME_LABELS.get(float(seconds), f"{seconds:g} s")


def noise_table(entry: Entry) -> pd.DataFrame:
    """The measured training noise per configuration and layer, for the page."""
    rows = []
    for i, key in enumerate(entry["configs"]):
        for j, shape in enumerate(entry["shapes"]):
            rows.append({"noise": NOISE_CONFIGS[key], "layer": shape,
                         "std dW / max|W|": float(entry["std_w"][i, j]),
                         "mean dW / max|W|": float(entry["mean_w"][i, j]),
                         "std db / max|b|": float(entry["std_b_maxb"][i, j]),
                         "std db / max|[W b]|": float(entry["std_b_maxwb"][i, j]),
                         "bias noise-free": bool(entry["bias_still"][i, j])})
    return pd.DataFrame(rows)


def noise_gap(entry: Entry, keys: Sequence[str] = ("cpp", "torch")) -> float:
    """The largest difference, over the layers, between the ``std(dW)/max|W|`` of an aihwkit
    tile and hwlib's (absolute)."""
    configs = list(entry["configs"])
    std = np.asarray(entry["std_w"])
    ref = std[configs.index("hwlib")]
    return float(max(np.abs(std[configs.index(k)] - ref).max() for k in keys))


#: How the draw-frequency facts read on the page.
FREQUENCY_LABELS = {
    "draws_per_step": "noise draws per training step",
    "forwards_per_step": "forward passes per training step",
    "forwards_differ": "two forward passes of one step see different draws",
    "one_draw_per_batch": "one draw shared by every image of a mini-batch",
    "noisy_before_first_step": "the first mini-batch is noisy",
    "differs_after_step": "the next mini-batch gets a new draw",
    "redraws_with_plain_optimizer": "a plain torch optimizer gets new draws",
}


def frequency_table(entry: Entry) -> pd.DataFrame:
    """When the noise is drawn, per library (yes / no / a count), for the page."""
    freq = entry["frequency"]
    facts = list(FREQUENCY_LABELS)
    data = {}
    for who in sorted(freq, key=lambda k: (not k.startswith("hwlib"), k)):
        vals = freq[who]
        col = []
        for f in facts:
            if f not in vals:
                col.append("—")
            elif f.endswith("per_step"):
                col.append(str(vals[f]))
            else:
                col.append("yes" if vals[f] else "no")
        data[who] = col
    out = pd.DataFrame(data, index=[FREQUENCY_LABELS[f] for f in facts])
    out.index.name = "measured on one mini-batch"
    return out


def timing_table(entry: Entry) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The step and instance rows: median time, ratio to the baseline (row 0), paired ratio."""
    out = []
    for names, key, unit, scale in ((entry["step_names"], "step_s", "ms per step", 1e3),
                                    (entry["instance_names"], "instance_s", "s", 1.0)):
        times = np.asarray(entry[key])
        ratio, paired = _ratios(times)
        out.append(pd.DataFrame({"configuration": names,
                                 unit: np.round(np.median(times, axis=1) * scale, 2),
                                 "ratio": np.round(ratio, 2),
                                 "paired ratio": np.round(paired, 2)}).set_index("configuration"))
    return out[0], out[1]


def timing_ratio(entry: Entry, kind: str, name: str) -> float:
    """One row's paired ratio to its baseline (``kind``: ``step`` or ``instance``)."""
    names = list(entry[f"{kind}_names"])
    _, paired = _ratios(np.asarray(entry[f"{kind}_s"]))
    return float(paired[names.index(name)])


# --- claim readings ----------------------------------------------------------------------------


def readings_findings(equivalence: Entry, timing: Entry, summary: pd.DataFrame,
                      pcm_summary: pd.DataFrame, train_sigma: float,
                      drift_times: Sequence[float]) -> dict[str, tuple[dict, str]]:
    """The measurements of the chapter's findings (``peers.findings.*`` in the scorecard)."""
    top = 2 * float(train_sigma)
    gap = noise_gap(equivalence)
    hw_step = timing_ratio(timing, "step", "hwlib HA-SGD")
    hw_inst = timing_ratio(timing, "instance", "hwlib")
    levels = sorted(set(summary.level))
    times = [float(t) for t in drift_times]
    return {
        "peers.findings.noise_definitions_agree": (
            {"value": gap}, "largest gap over layers, both aihwkit tiles"),
        "peers.findings.hwlib_step_cheaper": (
            {"vs_cpp": hw_step / timing_ratio(timing, "step", "aihwkit C++ tile"),
             "vs_torch": hw_step / timing_ratio(timing, "step", "aihwkit torch tile")},
            "hwlib's step ratio over each aihwkit tile's"),
        "peers.findings.hwlib_chips_cheaper": (
            {"vs_cpp": hw_inst / timing_ratio(timing, "instance", "aihwkit C++ tile"),
             "vs_torch": hw_inst / timing_ratio(timing, "instance", "aihwkit torch tile")},
            "hwlib's 32-chip ratio over each aihwkit tile's"),
        "peers.findings.hwa_beats_standard": (
            {"hwlib": stat(summary, "hwlib", top), "aihwkit": stat(summary, "aihwkit", top),
             "standard": stat(summary, "standard", top)}, f"p = {top:g}, percent"),
        "peers.findings.hasgd_as_robust_as_hwa": (
            {"hwlib": [stat(summary, "hwlib", p) for p in levels],
             "aihwkit": [stat(summary, "aihwkit", p) for p in levels]},
            "p = " + ", ".join(f"{p:g}" for p in levels)),
        "peers.findings.pcm_hasgd_near_hwa": (
            {"hwlib": [stat(pcm_summary, "hwlib", t) for t in times],
             "aihwkit": [stat(pcm_summary, "aihwkit", t) for t in times]},
            "t = " + ", ".join(time_label(t) for t in times)),
    }
