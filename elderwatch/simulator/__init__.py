"""Synthetic elderly single-occupant households: 15-minute electricity and water readings with labels.

>>> from elderwatch.simulator import simulate, SimulationSummary
"""

from elderwatch.simulator.core import GENERATOR_VERSION, SimulationSummary, simulate, simulate_household

__all__ = ["GENERATOR_VERSION", "SimulationSummary", "simulate", "simulate_household"]
