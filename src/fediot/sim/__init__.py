"""The in-process simulation runtime (no Flower import): the fast path for experiments."""

from fediot.sim.runtime import RoundRecord, SimResult, run_rounds

__all__ = ["RoundRecord", "SimResult", "run_rounds"]
