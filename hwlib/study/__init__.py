"""The study's plumbing: profiles, parameters, the results store, sweeps, the notebook
pipeline, the scorecard and its verdict rules, the status page.

Nothing here changes a number: these modules are left out of the code fingerprints of stored
results (:func:`hwlib.study.provenance.is_plumbing`).
"""

from .session import DATASET_LABELS, Phrase, Session, setup  # noqa: E402

__all__ = ["DATASET_LABELS", "Phrase", "Session", "setup"]
