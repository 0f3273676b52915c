"""Suite-wide test settings."""

from hypothesis import HealthCheck, settings

# CI machines are small and shared: a slow example is not a failure (no per-example deadline).
settings.register_profile("fediot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fediot")
