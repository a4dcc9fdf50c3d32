"""`pulse`: drive Pulse from a terminal.

    pulse login                     pulse costs --by model          pulse events import usage.csv
    pulse whoami                    pulse budgets                   pulse tail

Each command group lives in its own module (auth, costs, budgets, benchmarks, events, tail);
this one holds the global options and the one rule for failures: a line on stderr and a
non-zero exit code, never a traceback (PULSE_DEBUG=1 shows one for a bug).
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import click

from .._version import __version__
from ..api import ApiError
from ..config import ConfigError
from . import auth, benchmarks, budgets, costs, events, tail
from .session import CliError, Session

EXIT_ERROR = 1  # the request or the file failed
EXIT_USAGE = 2  # a bad option or argument (Click's own code)


class PulseGroup(click.Group):
    """Turns every expected failure into CliError's one line, and an unexpected one too; a
    usage error is one line as well (Click's own adds the usage and a hint above it)."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as error:
            where = f" (see `{error.ctx.command_path} --help`)" if error.ctx is not None else ""
            CliError(f"{error.format_message()}{where}").show()
            sys.exit(EXIT_USAGE)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.exceptions.Abort:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except OSError as error:
            if error.errno != errno.EPIPE:
                raise
            # `pulse costs | head`: the reader left; nothing to say, and nothing more to flush
            # at exit (Python's advice: point stdout at devnull).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_ERROR)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as error:
            raise CliError(error.message) from None
        except ConfigError as error:
            raise CliError(str(error)) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as error:
            if os.environ.get("PULSE_DEBUG"):
                raise
            raise CliError(
                f"Unexpected {type(error).__name__}: {error}. Run again with PULSE_DEBUG=1 for the details, "
                "and please report it."
            ) from None
        finally:
            session = ctx.find_object(Session)
            if session is not None:
                session.close()


@click.group(cls=PulseGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--base-url", metavar="URL",
    help="The Pulse server. Default: $PULSE_BASE_URL, else the one `pulse login` stored, else http://127.0.0.1:8000.",
)
@click.option(
    "--api-key", metavar="TOKEN",
    help="The API token. Default: $PULSE_API_KEY, else the one `pulse login` stored.",
)
@click.option(
    "--project", metavar="UUID",
    help="The project, for an organization-wide token. Default: $PULSE_PROJECT, else the one `pulse login` stored.",
)
@click.version_option(__version__, "--version", prog_name="pulse", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, base_url: str | None, api_key: str | None, project: str | None) -> None:
    """Pulse from a terminal: your LLM spend, budgets, alerts and benchmarks, and events in and out.

    Exit codes: 0 done; 1 failed (network, token, server, file); 2 bad usage; 3 `events import`
    finished but rejected some lines.
    """
    ctx.obj = Session(api_key=api_key, base_url=base_url, project_option=project)


for command in (
    auth.login, auth.logout, auth.whoami, costs.costs, costs.recommendations, budgets.budgets,
    budgets.alerts, benchmarks.benchmarks, events.events, tail.tail,
):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """The `pulse` console script."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="pulse")


__all__ = ["cli", "main"]
