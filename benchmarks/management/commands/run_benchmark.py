"""manage.py run_benchmark [--target <uuid>] [--public]: run a benchmark now, in this process,
printing one line per measured model and a progress bar as results arrive."""

from __future__ import annotations

import threading
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser

from benchmarks import execution
from benchmarks.models import BenchmarkResult, Run, Target

BAR_WIDTH = 10
MESSAGE_WIDTH = 160  # one console line per result, even for a provider's essay of an error


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def describe(result: BenchmarkResult) -> str:
    """One console line: `✓ Provider / model  latency … ms  TTFT … ms  TPS …  tokens in→out  $cost  status`."""
    name = f"{result.provider_name} / {result.model_name}"
    if not result.success:
        status = f" {result.status_code}" if result.status_code else ""
        text = " ".join(result.error_message.split())
        message = f": {text[:MESSAGE_WIDTH]}{'…' if len(text) > MESSAGE_WIDTH else ''}" if text else ""
        return f"✗ {name}  {result.error_kind or 'error'}{status}{message}"
    parts = [
        f"latency {_num(result.total_latency_ms, '.0f')} ms",
        f"TTFT {_num(result.ttft_ms, '.0f')} ms",
        f"TPS {_num(result.tps, '.1f')}",
        f"tokens {_num(result.input_tokens, 'd')}→{_num(result.output_tokens, 'd')}",
        f"${result.cost_usd:.6f}" if result.is_priced and result.cost_usd is not None else "unpriced",
        str(result.status_code or ""),
    ]
    return f"✓ {name}  " + "  ".join(part for part in parts if part)


def _num(value: float | int | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


class Command(BaseCommand):
    help = "Run a benchmark synchronously: every active public model (default) or one private target."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--target", type=UUID, help="UUID of a private target to benchmark.")
        parser.add_argument("--public", action="store_true", help="Benchmark every active public model (default).")

    def handle(self, *args: object, **options: object) -> None:
        target_uuid, public = options["target"], options["public"]
        if target_uuid and public:
            raise CommandError("Choose --target or --public, not both.")
        target = None
        if target_uuid:
            # An operator's command: it may run any organization's target.
            target = Target.objects.dangerously_unscoped().select_related("organization").filter(uuid=target_uuid).first()
            if target is None:
                raise CommandError(f"No target {target_uuid}.")
        try:
            run = execution.start_run(
                name=f"manage.py run_benchmark ({target.name if target else 'public'})",
                triggered_by=Run.Trigger.MANUAL,
                organization=target.organization if target else None,
                target=target,
                schedule_key=f"target:{target.uuid}" if target else execution.PUBLIC_SCHEDULE,
            )
        except execution.RunAlreadyActive as error:
            raise CommandError(str(error)) from error

        self.stdout.write(f"Run {run.uuid}: {run.name}")
        lock = threading.Lock()  # results arrive from the runner's thread

        def on_measured(result: BenchmarkResult, done: int, total: int) -> None:
            with lock:
                line = describe(result)
                self.stdout.write(self.style.SUCCESS(line) if result.success else self.style.ERROR(line))
                self.stdout.write(progress_bar(done, total))
                self.stdout.flush()

        run = execution.execute_run(run, on_measured=on_measured)
        successes = run.results.filter(success=True).count()
        total = run.results.count()
        if total == 0:
            self.stdout.write(self.style.WARNING("Nothing to measure (no active models or model names)."))
        summary = f"Run {run.status}: {successes}/{total} succeeded."
        self.stdout.write(self.style.SUCCESS(summary) if run.status == Run.Status.FINISHED else self.style.ERROR(summary))
