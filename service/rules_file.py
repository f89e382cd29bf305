"""The rules file named by ``RELAY_CONFIG``: read once at start-up, YAML to ``Rules``.

Apart from ``mapping`` so the rules themselves stay pure: only this module touches the
filesystem and the YAML parser.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from service.errors import ConfigError
from service.mapping import Rules, parse_rules


def load_rules(path: Path | None) -> Rules:
    """Read and validate the rules file; ``ConfigError`` names the file and the key."""
    if path is None:
        return Rules()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"RELAY_CONFIG: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # a ValueError, not an OSError: would escape as is
        raise ConfigError(f"RELAY_CONFIG: {path} is not UTF-8 text: {exc.reason}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"RELAY_CONFIG: {path} is not valid YAML: {exc}") from None
    try:
        return parse_rules({} if document is None else document)
    except ValueError as exc:
        raise ConfigError(f"RELAY_CONFIG: {path}: {exc}") from None
