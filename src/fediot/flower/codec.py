"""Convert fediot's transport-agnostic values (weights, configs, updates, statistics) to Flower records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fediot.federated.types import ClientUpdate, Config, Metrics, Scalar, Weights

if TYPE_CHECKING:  # flwr is an optional dependency, imported lazily where it is used
    from flwr.app import ArrayRecord, ConfigRecord, RecordDict

__all__ = [
    "ARRAYS_KEY",
    "CONFIG_KEY",
    "METRICS_KEY",
    "NUM_EXAMPLES_KEY",
    "OTHER_METRICS_KEY",
    "SCALER_KEY",
    "SCALER_META_KEY",
    "SUMMARY_KEY",
    "arrayrecord_to_weights",
    "config_to_configrecord",
    "configrecord_to_config",
    "import_flwr",
    "plain_to_records",
    "recorddict_to_update",
    "records_to_plain",
    "records_to_scaler",
    "scaler_to_records",
    "update_to_recorddict",
    "weights_to_arrayrecord",
]

ARRAYS_KEY = "arrays"
"""RecordDict key of the ArrayRecord (weights or statistics), as in Flower's strategies."""
CONFIG_KEY = "config"
"""RecordDict key of the ConfigRecord sent by the server."""
METRICS_KEY = "metrics"
"""RecordDict key of the MetricRecord in a reply (holds ``num-examples`` and numeric metrics)."""
OTHER_METRICS_KEY = "metrics-other"
"""RecordDict key of a ConfigRecord holding a reply's bool and str metrics (a MetricRecord cannot)."""
NUM_EXAMPLES_KEY = "num-examples"
"""The FedAvg weight, under Flower's default ``weighted_by_key``."""
SCALER_KEY = "scaler"
"""RecordDict key of the ArrayRecord holding a server-sent scaler's per-feature arrays."""
SCALER_META_KEY = "scaler-meta"
"""RecordDict key of the ConfigRecord holding that scaler's ``kind`` and ``log`` flag."""
SUMMARY_KEY = "summary"
"""RecordDict key of a statistics query's answer (:func:`plain_to_records` of an encoded summary)."""

_FLOWER_MISSING = "Flower is not installed; install the extra with: pip install 'fediot[flower]'"


def import_flwr() -> Any:
    """Import and return the ``flwr.app`` module, or fail naming the extra to install.

    Call it before any ``from flwr... import`` so a missing extra gives an actionable message.

    Raises
    ------
    ImportError
        If ``flwr`` is missing (the message names ``pip install 'fediot[flower]'``).
    """
    try:
        import flwr.app
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(_FLOWER_MISSING) from exc
    return flwr.app


def weights_to_arrayrecord(weights: Weights) -> ArrayRecord:
    """Wrap ``weights`` (a list of float32 arrays) in an ``ArrayRecord`` (keys ``"0"``, ``"1"``, ...)."""
    import_flwr()
    from flwr.app import ArrayRecord

    return ArrayRecord([np.ascontiguousarray(w, dtype=np.float32) for w in weights])


def arrayrecord_to_weights(record: ArrayRecord) -> Weights:
    """Return the arrays of ``record`` as float32 ``Weights``, in record order."""
    return [np.asarray(a, dtype=np.float32) for a in record.to_numpy_ndarrays()]


def config_to_configrecord(config: Config) -> ConfigRecord:
    """Wrap a fediot ``Config`` (kebab-case keys, scalar values) in a ``ConfigRecord``."""
    import_flwr()
    from flwr.app import ConfigRecord

    return ConfigRecord({str(k): v for k, v in config.items()})


def configrecord_to_config(record: ConfigRecord) -> dict[str, Scalar]:
    """Return the scalar entries of ``record`` as a fediot ``Config`` (lists and bytes are refused).

    Raises
    ------
    TypeError
        If a value is not a bool, int, float or str.
    """
    out: dict[str, Scalar] = {}
    for key, value in record.items():
        if not isinstance(value, bool | int | float | str):
            raise TypeError(f"config value {key!r} must be a scalar, got {type(value).__name__}")
        out[key] = value
    return out


def update_to_recorddict(update: ClientUpdate) -> RecordDict:
    """Encode a client's reply: weights, ``num-examples`` and its metrics; nothing else.

    Numeric metrics go to the MetricRecord beside ``num-examples``; bool and str metrics to a
    ConfigRecord (``metrics-other``) so their types survive the trip.
    """
    import_flwr()
    from flwr.app import ConfigRecord, ConfigRecordValues, MetricRecord, MetricRecordValues, RecordDict

    numeric: dict[str, MetricRecordValues] = {NUM_EXAMPLES_KEY: int(update.num_examples)}
    other: dict[str, ConfigRecordValues] = {}
    for key, value in update.metrics.items():
        if key == NUM_EXAMPLES_KEY:
            raise ValueError(f"metric name {NUM_EXAMPLES_KEY!r} is reserved")
        if isinstance(value, bool | str):
            other[key] = value
        else:
            numeric[key] = value
    content: dict[str, ArrayRecord | MetricRecord | ConfigRecord] = {
        ARRAYS_KEY: weights_to_arrayrecord(update.weights),
        METRICS_KEY: MetricRecord(numeric),
    }
    if other:
        content[OTHER_METRICS_KEY] = ConfigRecord(other)
    return RecordDict(content)


def recorddict_to_update(content: RecordDict) -> ClientUpdate:
    """Decode :func:`update_to_recorddict`'s output back to a :class:`ClientUpdate`."""
    metric_record = content.metric_records[METRICS_KEY]
    num_examples = metric_record[NUM_EXAMPLES_KEY]
    if not isinstance(num_examples, int | float) or num_examples < 0:
        raise ValueError(f"reply has an invalid {NUM_EXAMPLES_KEY}: {num_examples!r}")
    metrics: Metrics = {}
    for key, value in metric_record.items():
        if key != NUM_EXAMPLES_KEY and isinstance(value, int | float):
            metrics[key] = value
    if OTHER_METRICS_KEY in content.config_records:
        metrics.update(configrecord_to_config(content.config_records[OTHER_METRICS_KEY]))
    weights = arrayrecord_to_weights(content.array_records[ARRAYS_KEY])
    return ClientUpdate(weights, int(num_examples), metrics)


def plain_to_records(d: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Encode a plain dict (numpy arrays and bool/int/float/str scalars) as two records under ``key``.

    Arrays go to an ``ArrayRecord`` under ``key``, scalars to a ``ConfigRecord`` under ``key-meta``, so every
    value keeps its dtype or type. Returns the records to merge into a message's RecordDict. This is the
    one encoding of scalers and statistics summaries.
    """
    import_flwr()
    from flwr.app import Array, ArrayRecord, ConfigRecord, ConfigRecordValues

    arrays: dict[str, Array] = {}
    meta: dict[str, ConfigRecordValues] = {}
    for name, value in d.items():
        if isinstance(value, np.ndarray):
            arrays[name] = Array(np.ascontiguousarray(value))
        elif isinstance(value, bool | int | float | str):
            meta[name] = value
        elif isinstance(value, np.generic):
            meta[name] = value.item()
        else:
            raise TypeError(f"{key} field {name!r} of type {type(value).__name__} cannot be encoded")
    return {key: ArrayRecord(arrays), f"{key}-meta": ConfigRecord(meta)}


def records_to_plain(content: RecordDict, key: str) -> dict[str, Any]:
    """Decode :func:`plain_to_records`'s records under ``key`` in ``content``.

    Raises
    ------
    KeyError
        If ``content`` holds no such records.
    """
    out: dict[str, Any] = {name: np.asarray(arr.numpy()) for name, arr in content.array_records[key].items()}
    out.update(dict(content.config_records[f"{key}-meta"].items()))
    return out


def scaler_to_records(scaler: Any) -> dict[str, Any]:
    """Encode a fitted scaler (its ``to_dict()``) with :func:`plain_to_records` under :data:`SCALER_KEY`.

    Only per-feature parameters cross the network, never rows.
    """
    return plain_to_records(scaler.to_dict(), SCALER_KEY)


def records_to_scaler(content: RecordDict) -> Any:
    """Decode :func:`scaler_to_records`'s records in ``content`` to a scaler (None when there are none).

    Returns a ``fediot.data.scaling`` scaler (``MinMaxScaler`` or ``StandardScaler``).
    """
    from fediot.data.scaling import scaler_from_dict

    if SCALER_KEY not in content.array_records or SCALER_META_KEY not in content.config_records:
        return None
    return scaler_from_dict(records_to_plain(content, SCALER_KEY))
