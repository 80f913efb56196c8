"""spikerbm: Restricted Boltzmann Machines for large-scale spiking recordings."""

__version__ = "0.1.0"
