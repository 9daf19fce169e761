"""The three execution profiles, in one place.

Every notebook has a ``PROFILE`` parameter. A notebook knob left at ``None`` takes its value
from the profile below; a knob given a value (in the notebook, with papermill ``-p`` or with
``make notebook P="..."``) overrides it.

* ``smoke``: seconds per notebook, tiny subsets. For CI only: the numbers mean nothing.
* ``book``: the default. Meaningful results on a 2-core CPU within each chapter's stated
  budget, on MNIST or Fashion-MNIST.
* ``paper``: the paper's own datasets, architectures and epochs. For a user with a GPU and
  internet access (CIFAR-10/100 and SVHN are downloaded on first use).
"""

from __future__ import annotations

PROFILES: dict[str, dict[str, object]] = {
    "smoke": dict(
        mc_samples=20_000,        # Monte Carlo draws per sweep point
        n_train=1_024,            # training images used (a fixed subset)
        n_test=512,               # test images used
        epochs=1,                 # training epochs (a chapter may set its own)
        instances=2,              # hardware instances averaged per accuracy point
        datasets=["mnist"],       # datasets the chapters train on
        model="mlp",              # S-DDHR network: "mlp" (binarized MLP) or "vgg" (the paper's)
        device="cpu",             # torch device: "auto", "cpu" or "cuda"
    ),
    "book": dict(
        mc_samples=2_000_000,
        n_train=60_000,
        n_test=10_000,
        epochs=3,
        instances=5,
        datasets=["mnist", "fashion_mnist"],
        model="mlp",
        device="cpu",
    ),
    "paper": dict(
        mc_samples=20_000_000,
        n_train=None,             # None: the whole training set
        n_test=None,
        epochs=200,               # S-DDHR's; other chapters set their paper's epoch count
        instances=5,
        datasets=["cifar10"],     # S-DDHR's; other chapters set their paper's datasets
        model="vgg",
        device="auto",            # CUDA when present, else the CPU
    ),
}

DEFAULT_PROFILE = "book"
