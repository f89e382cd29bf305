"""Relay Opsgenie alert webhooks to DX incidents."""

__version__ = "0.1.0"
