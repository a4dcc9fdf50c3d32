"""Where the SDK and the CLI find Pulse and the token to use.

One order everywhere: an explicit argument, then the environment (`PULSE_API_KEY`,
`PULSE_BASE_URL`), then the file `pulse login` wrote. The file lives in the user's config
directory (`$PULSE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/pulse`, `~/Library/Application Support/pulse`
on macOS, `%APPDATA%\\pulse` on Windows, `~/.config/pulse` elsewhere) with mode 0600, because it
holds a secret.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._version import __version__

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_KEY_ENV = "PULSE_API_KEY"
BASE_URL_ENV = "PULSE_BASE_URL"
CONFIG_DIR_ENV = "PULSE_CONFIG_DIR"
CONFIG_FILE = "config.json"
USER_AGENT = f"pulse-sdk/{__version__} (python {sys.version_info[0]}.{sys.version_info[1]})"


class ConfigError(Exception):
    """The config file exists but cannot be read as Pulse's."""


@dataclass(frozen=True)
class Credentials:
    api_key: str | None
    base_url: str
    # Where each value came from ("argument", "environment", "config file", "default"): the
    # CLI's `whoami` says so, and an error can point at the right place.
    api_key_from: str = "none"
    base_url_from: str = "default"


def config_dir() -> Path:
    explicit = os.environ.get(CONFIG_DIR_ENV)
    if explicit:
        return Path(explicit)
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / "pulse"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "pulse"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "pulse"


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


def load_file() -> dict:
    """The stored settings ({} when there are none)."""
    try:
        path = config_path()
    except RuntimeError as error:  # no $HOME and no passwd entry (a container's arbitrary uid)
        raise ConfigError(f"Cannot find the config directory ({error}); set {CONFIG_DIR_ENV}.") from error
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f"Cannot read {path}: {error.strerror}.") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text; delete it or run `pulse login` again.") from error
    try:
        data = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{path} is not valid JSON; delete it or run `pulse login` again.") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold Pulse settings; delete it or run `pulse login` again.")
    return data


def save_file(data: dict) -> Path:
    """Replaces the stored settings atomically; the file is readable by its owner only."""
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / CONFIG_FILE
    # Written to a private temporary file first, so the secret is never readable by others,
    # not even for a moment, and a crash never leaves half a file.
    fd, temporary = tempfile.mkstemp(prefix=".config-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            os.chmod(temporary, 0o600)
            json.dump(data, stream, indent=2, sort_keys=True)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path


def delete_file() -> bool:
    """Forgets the stored settings; False when there were none."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True


def normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    return url


def resolve(api_key: str | None = None, base_url: str | None = None, *, use_file: bool = True) -> Credentials:
    """The token and server to use: arguments first, then the environment, then the file."""
    stored: dict = {}
    if use_file and (api_key is None or base_url is None):
        try:
            stored = load_file()
        except ConfigError:
            stored = {}  # an unreadable file must not break an application that only tracks
    key, key_from = api_key, "argument"
    if not key:
        key, key_from = os.environ.get(API_KEY_ENV) or None, "environment"
    if not key:
        value = stored.get("api_key")
        key, key_from = (value, "config file") if isinstance(value, str) and value else (None, "none")
    url, url_from = base_url, "argument"
    if not url:
        url, url_from = os.environ.get(BASE_URL_ENV) or None, "environment"
    if not url:
        value = stored.get("base_url")
        url, url_from = (value, "config file") if isinstance(value, str) and value else (DEFAULT_BASE_URL, "default")
    return Credentials(api_key=key, base_url=normalize_base_url(url), api_key_from=key_from, base_url_from=url_from)
