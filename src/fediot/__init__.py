"""fediot: federated deep-autoencoder detection of botnet and attack traffic on IoT networks."""

from fediot.errors import DataError, FediotError

__all__ = ["DataError", "FediotError", "__version__"]

__version__ = "0.1.0"
