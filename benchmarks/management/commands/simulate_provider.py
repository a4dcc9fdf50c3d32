"""Run Pulse's simulated LLM provider in the foreground (the demo's stand-in for real providers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from django.core.management.base import BaseCommand, CommandError, CommandParser

from benchmarks.simulator import (
    DEFAULT_PROFILES,
    KINDS,
    SERVER_OPTIONS,
    ModelProfile,
    base_url_for,
    build_app,
    load_profiles,
)


class Command(BaseCommand):
    help = (
        "Serve simulated OpenAI-compatible, Anthropic and Gemini streaming endpoints. "
        "Any non-empty API key works except 'bad-key'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--profiles", type=Path,
            help="JSON file of extra model profiles {name: {field: value}}, added to the defaults",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        profiles = self._profiles(options["profiles"])
        root = f"http://{options['host']}:{options['port']}"

        def banner(*_: object) -> None:
            # run_app calls this once the socket listens, so "URLs printed" means "ready".
            for kind in KINDS:
                self.stdout.write(f"{kind:<18} {base_url_for(root, kind)}")
            self.stdout.write("models: " + ", ".join(sorted(profiles)))
            self.stdout.write("Ctrl-C stops the simulator.")
            self.stdout.flush()

        web.run_app(
            build_app(profiles), host=options["host"], port=options["port"], print=banner,
            **SERVER_OPTIONS,
        )

    @staticmethod
    def _profiles(path: Path | None) -> dict[str, ModelProfile]:
        if path is None:
            return dict(DEFAULT_PROFILES)
        try:
            return {**DEFAULT_PROFILES, **load_profiles(path)}
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot load profiles: {exc}") from exc
