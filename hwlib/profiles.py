"""The three execution profiles, in one place.

Every notebook has a ``PROFILE`` parameter. A notebook knob left at ``None`` takes its value
from the profile below; a knob given a value (in the notebook, with papermill ``-p`` or with
``make notebook P="..."``) overrides it.

* ``smoke``: seconds per notebook, tiny subsets. For CI only: the numbers mean nothing.
* ``book``: the default. Meaningful results on a 2-core CPU within each chapter's stated
  budget, on MNIST or Fashion-MNIST.
* ``paper``: the paper's own datasets, architectures and epochs. For a user with a GPU and
  internet access (CIFAR-10/100 and SVHN are downloaded on first use).

``PROFILES`` holds the settings every chapter shares (S-DDHR's, where they differ);
``CHAPTER_PROFILES`` holds, per chapter, the settings that differ from them. A notebook that
calls ``hwlib.setup(PROFILE, chapter="...")`` sees both, its chapter's winning.
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

#: Per chapter and profile: the settings that differ from ``PROFILES`` (and the chapter's own
#: knobs). Read as ``{**PROFILES[p], **CHAPTER_PROFILES[chapter][p]}``.
CHAPTER_PROFILES: dict[str, dict[str, dict[str, object]]] = {
    "sddhr": {"smoke": {}, "book": {}, "paper": {}},
    "memory_faults": {"smoke": {}, "book": {}, "paper": {}},
    "hasgd": {"smoke": {}, "book": {}, "paper": {}},
    "memristive": {"smoke": {}, "book": {}, "paper": {}},
}


def settings(profile: str, chapter: str | None = None) -> dict[str, object]:
    """The settings of ``profile`` as one chapter sees them (no checks: see params)."""
    out = dict(PROFILES[profile])
    if chapter is not None:
        out.update(CHAPTER_PROFILES[chapter][profile])
    return out
