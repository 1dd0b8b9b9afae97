"""The reference device agent of the Device Operations Server (agent/README.md)."""

__version__ = "0.1.0"
