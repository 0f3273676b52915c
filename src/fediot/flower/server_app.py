"""Flower ServerApp adapter: read the run config, run the federation engine over the Grid, save results.

The round loop, client selection and statistics rounds are :mod:`fediot.federated.engine`'s; this module
only builds the configuration (:func:`fediot.config.fl_config_from_run_config`), the transport
(:class:`~fediot.flower.transport.GridTransport`) and the file outputs (checkpoint, history, detector).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fediot.config import FLConfig, fl_config_from_run_config, flatten_config
from fediot.errors import ConfigError
from fediot.federated.engine import EngineState, FederationResult, RoundRecord, run_fl
from fediot.federated.events import JsonLinesHandler, event
from fediot.federated.types import Weights
from fediot.flower.checkpoint import check_resumable, load_checkpoint, save_checkpoint, write_history
from fediot.flower.codec import import_flwr
from fediot.flower.secagg import require_secure_aggregation
from fediot.flower.transport import GridTransport

if TYPE_CHECKING:
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    from fediot.data.scaling import Scaler

__all__ = [
    "RUN_FAILED",
    "RUN_FINISHED",
    "ServerResult",
    "initial_weights",
    "make_server_app",
    "run_events",
    "run_server",
    "save_detector",
]

log = logging.getLogger(__name__)

RUN_FINISHED = "run finished in"
"""How the ServerApp's last log line starts when the run succeeded (``fediot submit`` looks for it)."""
RUN_FAILED = "run failed:"
"""How the ServerApp's last log line starts when the run failed, followed by the one-line reason."""


@dataclass(frozen=True, slots=True)
class ServerResult:
    """What :func:`run_server` returns: the engine's result and where the detector went (if saved)."""

    federation: FederationResult
    detector_path: str | None = None

    @property
    def weights(self) -> Weights:
        """Final global weights."""
        return self.federation.weights

    @property
    def rounds(self) -> list[RoundRecord]:
        """The whole round history."""
        return self.federation.rounds

    @property
    def scaler(self) -> Scaler | None:
        """The federated scaler."""
        return self.federation.scaler

    @property
    def threshold(self) -> float | None:
        """The federated threshold."""
        return self.federation.threshold


def feature_names(spec: str) -> tuple[str, ...] | None:
    """Return the column names ``server.feature_names`` names (``nbaiot``, a list, or none)."""
    text = spec.strip()
    if not text:
        return None
    if text == "nbaiot":
        from fediot.data.nbaiot import nbaiot_feature_names

        return nbaiot_feature_names()
    return tuple(name.strip() for name in text.split(","))


def save_detector(
    path: str | Path,
    cfg: FLConfig,
    weights: Weights,
    scaler: Scaler,
    threshold: float,
    *,
    names: Sequence[str] | None = None,
    privacy: dict[str, Any] | None = None,
) -> Path:
    """Assemble the federated ``AnomalyDetector`` of ``cfg`` and save it to ``path`` atomically."""
    from fediot.detect.detector import AnomalyDetector
    from fediot.federated.settings import threshold_rule
    from fediot.models.autoencoder import AutoencoderConfig

    detector = AnomalyDetector.from_parts(
        weights,
        scaler,
        threshold,
        config=AutoencoderConfig(scaler.num_features, ratios=cfg.train.ratios),
        feature_names=names,
        threshold_rule=threshold_rule(cfg.detect),
        training=None if privacy is None else {"privacy_spent": privacy},
    )
    return detector.save(path)


def run_server(
    grid: Grid,
    cfg: FLConfig,
    weights: Weights,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> ServerResult:
    """Run the federation ``cfg`` describes over ``grid``; checkpoint, write history, save the detector.

    With ``server.resume`` the run continues from ``server.checkpoint_path`` (refused when the file does
    not exist or was written under another configuration, naming the key).
    """
    server = cfg.server
    flat = flatten_config(cfg)
    state: EngineState | None = None
    if server.resume:
        assert server.checkpoint_path is not None  # ServerConfig checks it
        state, saved = load_checkpoint(server.checkpoint_path)
        check_resumable(saved, flat, server.checkpoint_path)
        log.info("resuming after round %d from %s", state.server_round, server.checkpoint_path)
    log.info(
        "federation: %d rounds of %s, fraction_fit %g, seed %d%s",
        cfg.federated.rounds,
        cfg.federated.strategy,
        cfg.federated.fraction_fit,
        cfg.seed,
        f", resumed after round {state.server_round}" if state is not None else "",
        extra=event(
            "run_start",
            rounds=cfg.federated.rounds,
            strategy=cfg.federated.strategy,
            fraction_fit=cfg.federated.fraction_fit,
            seed=cfg.seed,
            resume_after=0 if state is None else state.server_round,
        ),
    )

    def on_state(new: EngineState) -> None:
        if server.checkpoint_path:
            save_checkpoint(server.checkpoint_path, new, flat)
        if server.history_path:
            done = new.server_round == cfg.federated.rounds and new.threshold is not None
            write_history(server.history_path, new.history, finished=done)

    transport = GridTransport(grid, server)
    result = run_fl(transport, cfg, weights, state=state, on_round=on_round, on_state=on_state)
    saved_to: str | None = None
    if server.detector_path and result.scaler is not None and result.threshold is not None:
        names = feature_names(server.feature_names)
        path = save_detector(
            server.detector_path,
            cfg,
            result.weights,
            result.scaler,
            result.threshold,
            names=names,
            privacy=result.privacy,
        )
        saved_to = str(path)
        log.info("saved the federated detector to %s", saved_to, extra=event("detector_saved", path=saved_to))
    return ServerResult(result, saved_to)


def initial_weights(cfg: FLConfig) -> Weights:
    """Return the global autoencoder before round 1 (``server.num_features`` inputs, ``train.ratios``).

    Initialised from :func:`fediot.federated.settings.init_seed` of ``seed``, as the experiments do.
    """
    from fediot.federated.settings import init_seed
    from fediot.models.autoencoder import Autoencoder, AutoencoderConfig
    from fediot.models.weights import get_weights, init_module

    model = Autoencoder(AutoencoderConfig(cfg.server.num_features, ratios=cfg.train.ratios))
    return get_weights(init_module(model, init_seed(cfg.seed)))


def make_server_app(
    config_fn: Callable[[Context], FLConfig] | None = None,
    initial_weights_fn: Callable[[FLConfig], Weights] = initial_weights,
    *,
    on_result: Callable[[ServerResult], None] | None = None,
) -> ServerApp:
    """Build a Flower ``ServerApp`` whose main runs :func:`run_server`.

    Parameters
    ----------
    config_fn : callable, optional
        ``Context -> FLConfig``; default: the run config read strictly with
        :func:`fediot.config.fl_config_from_run_config`.
    initial_weights_fn : callable
        ``FLConfig -> Weights``: the global model before round 1 (default :func:`initial_weights`).
    on_result : callable, optional
        Receives the :class:`ServerResult` (tests, benchmarks).
    """
    import_flwr()
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        _log_to_run_stream()
        # the events file opens before the run config is checked, so that a refused config is its last line
        cfg = None if config_fn is None else config_fn(context)
        path = context.run_config.get("server.events-path") if cfg is None else cfg.server.events_path
        with run_events(str(path) if path else None):
            if cfg is None:
                cfg = fl_config_from_run_config(context.run_config)
            cfg = require_secure_aggregation(cfg)  # `fediot server --secure-aggregation`
            result = run_server(grid, cfg, initial_weights_fn(cfg))
        if on_result is not None:
            on_result(result)

    return app


@contextlib.contextmanager
def run_events(path: str | None) -> Iterator[None]:
    """Log the end of the block as the run's last line; with ``path``, also as JSON lines to that file.

    The end is ``run finished in S s`` (event ``run_end``), or ``run failed: REASON`` at ERROR (event
    ``run_failed``, the exception's one-line reason; the exception is re-raised): ``fediot submit`` reads
    it to set its exit status. With ``path`` (``server.events_path``) every fediot log record of the block
    is appended to it as one JSON line. Opening the file is checked before anything runs: a folder or an
    unwritable path is refused with a :class:`~fediot.errors.ConfigError` naming the key.
    """
    handler: JsonLinesHandler | None = None
    if path:
        target = Path(path)
        try:
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file")
            target.parent.mkdir(parents=True, exist_ok=True)
            handler = JsonLinesHandler(target)
        except OSError as exc:
            raise ConfigError(f"server.events_path: cannot write {path}: {exc.strerror or exc}") from None
    logger = logging.getLogger("fediot")
    if handler is not None:
        logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    started = time.monotonic()
    try:
        yield
    except BaseException as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        seconds = time.monotonic() - started
        log.error("%s %s", RUN_FAILED, reason, extra=event("run_failed", error=reason, seconds=seconds))
        raise
    else:
        seconds = time.monotonic() - started
        log.info("%s %.1f s", RUN_FINISHED, seconds, extra=event("run_end", seconds=seconds))
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()


def _log_to_run_stream() -> None:
    """Send fediot's INFO log lines (rounds, losses, failures, lost nodes) to this process's stdout.

    Flower's ``flwr-serverapp`` mirrors its stdout and stderr to the SuperLink, so the lines reach
    ``flwr run --stream`` and ``flwr log``; without a handler Python would print only warnings.
    """
    import sys

    logger = logging.getLogger("fediot")
    if not any(getattr(h, "_fediot_run_stream", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("fediot %(levelname)s: %(message)s"))
        handler._fediot_run_stream = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)


def __getattr__(name: str) -> Any:
    """Build the module-level ``app`` (for ``flwr run``) on first access."""
    if name == "app":
        return make_server_app()
    raise AttributeError(name)
