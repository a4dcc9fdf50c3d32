"""`pulse login`, `logout`, `whoami`: the token is checked with /me before it is stored, stored
with mode 0600 with what the server said about it, and an environment variable wins over it."""

from __future__ import annotations

import json
import stat

from pulse_sdk import config

from accounts.models import ApiToken

from .conftest import one_line_error, run_pulse


def stored() -> dict:
    return json.loads(config.config_path().read_text())


def test_login_asks_for_the_token_hidden_checks_it_and_stores_it_0600(cli, pulse):
    result = cli("login", key=None, input=f"{pulse.ingest_key}\n")

    assert result.exit_code == 0, result.stderr
    assert pulse.ingest_key not in result.stdout + result.stderr  # a hidden prompt: never echoed
    prefix = pulse.ingest_token.prefix
    assert result.stdout == (
        f"Logged in to {pulse.url} as token {prefix}… “sdk” (ingest, read) for Acme / Production.\n"
    )
    assert f"Saved to {config.config_path()} (readable only by you)." in result.stderr
    assert stat.S_IMODE(config.config_path().stat().st_mode) == 0o600
    assert stored() == {
        "api_key": pulse.ingest_key, "base_url": pulse.url, "token_prefix": prefix, "scopes": ["ingest", "read"],
        "organization": str(pulse.project.organization.uuid), "organization_name": "Acme",
        "token_project": str(pulse.project.uuid), "token_project_name": "Production",
    }


def test_login_reads_the_token_from_stdin_with_a_dash(cli, pulse):
    result = cli("login", "--token", "-", key=None, input=f"  {pulse.ingest_key}  \n")
    assert result.exit_code == 0, result.stderr
    assert stored()["api_key"] == pulse.ingest_key


def test_a_rejected_token_is_not_stored(cli, pulse):
    token, raw = pulse.issue_token(["read"])
    token.revoke(by=pulse.personas.owner)

    result = cli("login", "--token", raw, key=None)

    line = one_line_error(result)
    assert line == f"Error: {pulse.url} rejected that token (This API token has been revoked.); nothing was stored."
    assert not config.config_path().exists()


def test_whoami_says_where_the_token_came_from(cli, pulse):
    assert cli("login", "--token", pulse.ingest_key, key=None).exit_code == 0

    result = cli("whoami", key=None, base_url=None)

    assert result.exit_code == 0, result.stderr
    prefix = pulse.ingest_token.prefix
    assert result.stdout.splitlines() == [
        f"Server        {pulse.url}  (from `pulse login`)",
        f"Token         {prefix}… “sdk”  (from `pulse login`)",
        "Scopes        ingest, read",
        "Expires       never",
        f"Organization  Acme  ({pulse.project.organization.uuid})",
        f"Project       Production  ({pulse.project.uuid})",
    ]
    as_json = json.loads(cli("whoami", "--json", key=None, base_url=None).stdout)
    assert (as_json["token_from"], as_json["server_from"]) == ("config file", "config file")
    assert as_json["token"]["prefix"] == prefix and as_json["project"]["uuid"] == str(pulse.project.uuid)


def test_logout_forgets_the_token(cli, pulse):
    cli("login", "--token", pulse.ingest_key, key=None)

    result = cli("logout", key=None)

    assert result.exit_code == 0 and result.stdout == f"Logged out: removed {config.config_path()}.\n"
    assert not config.config_path().exists()
    line = one_line_error(cli("costs", key=None, base_url=None))
    assert line == "Error: Not logged in: run `pulse login` or set PULSE_API_KEY."
    assert cli("logout", key=None).stdout == "Not logged in: there was no stored token.\n"


def test_the_installed_command_logs_in_0600_and_the_environment_overrides_it(pulse):
    """The console script as a user runs it: the file is private, and PULSE_API_KEY wins."""
    login = run_pulse("login", "--base-url", pulse.url, "--token", "-", input=pulse.ingest_key + "\n")
    assert login.returncode == 0, login.stderr
    assert stat.S_IMODE(config.config_path().stat().st_mode) == 0o600
    assert stat.S_IMODE(config.config_path().parent.stat().st_mode) == 0o700

    mine = run_pulse("whoami")
    assert mine.returncode == 0, mine.stderr
    assert f"{pulse.ingest_token.prefix}… “sdk”  (from `pulse login`)" in mine.stdout

    other, raw = pulse.issue_token(["read"])
    overridden = run_pulse("whoami", env={"PULSE_API_KEY": raw})
    assert overridden.returncode == 0, overridden.stderr
    assert f"{other.prefix}… “sdk test”  (from PULSE_API_KEY)" in overridden.stdout
    assert f"Server        {pulse.url}  (from `pulse login`)" in overridden.stdout

    other.revoke(by=pulse.personas.owner)
    refused = run_pulse("whoami", env={"PULSE_API_KEY": raw})
    assert one_line_error(refused) == (
        f"Error: Token rejected by {pulse.url} (from PULSE_API_KEY): This API token has been revoked. "
        "It may be revoked, expired or mistyped: run `pulse login` with a valid token."
    )


def test_login_warns_when_the_environment_would_override_it(cli, pulse):
    result = cli("login", "--token", pulse.ingest_key, key=None, env={"PULSE_API_KEY": "pk_other"})
    assert result.exit_code == 0
    assert "PULSE_API_KEY is set in this environment and wins over the stored token" in result.stderr


def test_an_organization_wide_token_names_its_project(cli, pulse):
    token, raw = pulse.issue_token(["read"])
    ApiToken.objects.filter(pk=token.pk).update(project=None)
    project = str(pulse.project.uuid)

    assert cli("whoami", key=raw).stdout.splitlines()[-1] == (
        "Project       none chosen: the token is organization-wide; pass --project UUID to project commands"
    )
    assert cli("--project", project, "whoami", key=raw).stdout.splitlines()[-1] == (
        f"Project       {project}  (from --project; the token is organization-wide)"
    )
    assert one_line_error(cli("costs", key=raw)) == (
        "Error: Refused: project: Name the project (?project=<uuid>) "
        "(an organization-wide token: pass --project UUID or set PULSE_PROJECT)."
    )
    assert cli("costs", key=raw, env={"PULSE_PROJECT": project}).exit_code == 0

    assert cli("--project", project, "login", "--token", raw, key=None).exit_code == 0
    assert stored()["project"] == project and "token_project" not in stored()
    assert cli("costs", key=None, base_url=None).exit_code == 0  # the stored project is used
