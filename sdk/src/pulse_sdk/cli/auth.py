"""`pulse login`, `pulse logout`, `pulse whoami`: which server and token the other commands use.

The token is checked with `GET /api/v1/me` before anything is stored, and stored with what the
server said about it (organization, project, scopes) in the user's config file, mode 0600
(`config.save_file`). An explicit argument or the environment still wins over the file, and
whoami says which one is in force.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from .. import config
from ..api import PulseAPI, TokenRejected
from .output import note, out, paint, warn
from .session import PROJECT_ENV, CliError, Session

WHERE = {
    "argument": "--api-key", "environment": "PULSE_API_KEY", "config file": "`pulse login`", "default": "default",
}
BASE_URL_WHERE = {"argument": "--base-url", "environment": "PULSE_BASE_URL", "config file": "`pulse login`", "default": "default"}
FROM_STDIN = "-"
PROJECT_WHERE = {"argument": "--project", "environment": PROJECT_ENV, "config file": "`pulse login`"}


def _read_token(token: str | None) -> str:
    if token == FROM_STDIN:
        token = sys.stdin.readline()
    elif token is None:
        token = click.prompt("API token (from your project's API tokens page)", hide_input=True, err=True)
    token = (token or "").strip()
    if not token:
        raise CliError("No token given: paste one when asked, or pass --token TOKEN (or --token - to read stdin).", 2)
    return token


def _describe(me: dict) -> tuple[str, str]:
    """("token pk_ab12… “ci” (ingest, read)", "Acme / Production") from /me's answer."""
    token = me.get("token") or {}
    scopes = ", ".join(token.get("scopes") or []) or "no scopes"
    who = f"token {token.get('prefix', '?')}… “{token.get('name', '')}” ({scopes})"
    organization = (me.get("organization") or {}).get("name", "?")
    project = me.get("project")
    where = f"{organization} / {project['name']}" if project else f"{organization} (every project: an organization-wide token)"
    return who, where


@click.command()
@click.option("--base-url", "login_base_url", metavar="URL", help="The Pulse server to log in to (default: as for every command).")
@click.option("--token", metavar="TOKEN|-", help="The API token; `-` reads it from stdin. Asked for (hidden) when left out.")
@click.pass_obj
def login(session: Session, login_base_url: str | None, token: str | None) -> None:
    """Check an API token with the server and store it for the other commands (mode 0600)."""
    base_url = config.resolve(None, login_base_url or session.base_url).base_url
    token = _read_token(token if token is not None else session.api_key)
    project, project_from = session.project()
    with PulseAPI(token, base_url, max_attempts=2) as api:
        try:
            me = api.get("/api/v1/me")
        except TokenRejected as error:
            raise CliError(f"{base_url} rejected that token ({error.data and error.data.get('detail') or 'refused'}); nothing was stored.") from None
    if not isinstance(me, dict) or not me.get("token"):
        raise CliError(f"{base_url} did not describe that token as an API token; nothing was stored.")
    settings: dict[str, Any] = {
        "base_url": base_url,
        "api_key": token,
        "token_prefix": me["token"].get("prefix"),
        "scopes": me["token"].get("scopes") or [],
        "organization": (me.get("organization") or {}).get("uuid"),
        "organization_name": (me.get("organization") or {}).get("name"),
    }
    if me.get("project"):
        # A project-bound token's own project: shown by whoami, never sent as ?project= (the
        # token needs none, and another token used later with --api-key must not inherit it).
        settings["token_project"] = me["project"].get("uuid")
        settings["token_project_name"] = me["project"].get("name")
    elif project and project_from == "argument":
        settings["project"] = project  # an organization-wide token's default project
    path = config.save_file(settings)
    who, where = _describe(me)
    out(f"Logged in to {base_url} as {who} for {where}.")
    note(f"Saved to {path} (readable only by you).")
    if os.environ.get(config.API_KEY_ENV):
        warn("Note: PULSE_API_KEY is set in this environment and wins over the stored token; unset it to use this login.")


@click.command()
def logout() -> None:
    """Forget the stored token (the config file `pulse login` wrote)."""
    path = config.config_path()
    if config.delete_file():
        out(f"Logged out: removed {path}.")
    else:
        out("Not logged in: there was no stored token.")
    if os.environ.get(config.API_KEY_ENV):
        warn("PULSE_API_KEY is still set in this environment: commands keep using it.")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@click.pass_obj
def whoami(session: Session, as_json: bool) -> None:
    """Show the server, the token in force (and where it came from), its scopes, organization and project."""
    credentials = session.credentials()
    api = session.api()
    me = api.get("/api/v1/me")
    project, project_from = session.project()
    token = me.get("token") or {}
    bound = me.get("project")
    if as_json:
        out(json.dumps({
            "server": credentials.base_url, "server_from": credentials.base_url_from,
            "token": token, "token_from": credentials.api_key_from,
            "organization": me.get("organization"), "project": bound or None,
            "selected_project": project if not bound else None, "selected_project_from": project_from if project and not bound else None,
            "config_file": str(config.config_path()),
        }, indent=2))
        return
    scopes = ", ".join(token.get("scopes") or []) or "none"
    organization = me.get("organization") or {}
    rows = [
        ("Server", f"{credentials.base_url}  (from {BASE_URL_WHERE.get(credentials.base_url_from, credentials.base_url_from)})"),
        ("Token", f"{token.get('prefix', '?')}… “{token.get('name', '')}”  (from {WHERE.get(credentials.api_key_from, credentials.api_key_from)})"),
        ("Scopes", scopes),
        ("Expires", token.get("expires_at") or "never"),
        ("Organization", f"{organization.get('name', '?')}  ({organization.get('uuid', '?')})"),
    ]
    if bound:
        rows.append(("Project", f"{bound.get('name')}  ({bound.get('uuid')})"))
    elif project:
        rows.append(("Project", f"{project}  (from {PROJECT_WHERE.get(project_from, project_from)}; the token is organization-wide)"))
    else:
        rows.append(("Project", "none chosen: the token is organization-wide; pass --project UUID to project commands"))
    size = max(len(label) for label, _ in rows)
    for label, value in rows:
        out(f"{paint(label.ljust(size), sys.stdout, bold=True)}  {value}")
