"""What every command shares: the global options, resolved once, and the API client made from
them on first use (so `pulse --help` or `pulse events import --dry-run` need no token)."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field

import click

from .. import config
from ..api import PulseAPI
from .output import note, paint

PROJECT_ENV = "PULSE_PROJECT"


class CliError(click.ClickException):
    """A failure to report in one line on stderr, with `exit_code` (1 unless said otherwise)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: object = None) -> None:
        note(f"{paint('Error:', sys.stderr, fg='red', bold=True)} {self.format_message()}")


def project_uuid(value: str, source: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise CliError(f"The project {value!r} ({source}) is not a project UUID.", exit_code=2) from None


@dataclass
class Session:
    api_key: str | None = None  # --api-key
    base_url: str | None = None  # --base-url
    project_option: str | None = None  # --project
    _api: PulseAPI | None = field(default=None, repr=False)

    def credentials(self) -> config.Credentials:
        try:
            return config.resolve(self.api_key, self.base_url)
        except config.ConfigError as error:
            raise CliError(str(error)) from None

    def project(self) -> tuple[str | None, str]:
        """The project for organization-wide tokens, and where it came from."""
        if self.project_option:
            return project_uuid(self.project_option, "--project"), "argument"
        if os.environ.get(PROJECT_ENV):
            return project_uuid(os.environ[PROJECT_ENV], PROJECT_ENV), "environment"
        try:
            stored = config.load_file().get("project")
        except config.ConfigError as error:
            raise CliError(str(error)) from None
        if isinstance(stored, str) and stored:
            return project_uuid(stored, str(config.config_path())), "config file"
        return None, "none"

    def api(self, **options: object) -> PulseAPI:
        if self._api is None:
            credentials = self.credentials()
            self._api = PulseAPI(
                credentials.api_key, credentials.base_url, project=self.project()[0],
                api_key_from=credentials.api_key_from, **options,
            )
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None


def session() -> Session:
    return click.get_current_context().find_object(Session)
