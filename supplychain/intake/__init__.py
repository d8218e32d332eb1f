"""Intake: registries' webhook deliveries become jobs (the adapters are in ``registry_hooks``)."""
