"""spikerbm: Restricted Boltzmann Machines for large-scale spiking recordings.

``spikerbm.load_model(path)`` opens a trained model (:mod:`spikerbm.model`); it is imported on
first use, so ``import spikerbm`` stays free of torch (the workflow's DAG is built without it).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def __getattr__(name: str):
    if name == "load_model":
        from spikerbm.model import load_model

        return load_model
    raise AttributeError(f"module 'spikerbm' has no attribute {name!r}")
