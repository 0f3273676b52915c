"""The in-process simulation runtime (no Flower import): the fast path for experiments."""

from fediot.sim.batched import BatchedAutoencoderExecutor, train_autoencoders_batched
from fediot.sim.runtime import (
    Executor,
    InProcessTransport,
    RoundRecord,
    SequentialExecutor,
    SimResult,
    run_rounds,
)

__all__ = [
    "BatchedAutoencoderExecutor",
    "Executor",
    "InProcessTransport",
    "RoundRecord",
    "SequentialExecutor",
    "SimResult",
    "run_rounds",
    "train_autoencoders_batched",
]
