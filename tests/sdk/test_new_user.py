"""The SDK as a new user meets it: a fresh virtualenv, `pip install ./sdk`, the README's quick
start run as it is against a live Pulse, then `pulse login` and `pulse costs`.

Slow-ish (a virtualenv and a pip install, once per session), so everything a new user does is
checked in this one module, on one environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from benchmarks.simulator import DEFAULT_PROFILES, SimulatedProvider
from tests.conftest import PROJECT_ROOT
from tests.gateway.conftest import simulator, simulator_server  # noqa: F401 (fixtures)
from tests.sdk.conftest import LivePulse

SDK = PROJECT_ROOT / "sdk"
OPENAI_PIN = "openai==3.57.0"  # the version the rest of the suite tests with


def quickstart_code() -> str:
    """The first Python block after the quick-start marker in sdk/README.md."""
    readme = (SDK / "README.md").read_text(encoding="utf-8")
    marker = readme.index("<!-- quickstart")
    return re.search(r"```python\n(.*?)```", readme[marker:], re.S).group(1)


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with only `pip install ./sdk` (and the openai package the quick start uses)."""
    root = tmp_path_factory.mktemp("new-user") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    python = root / "bin" / "python"
    # Built from a copy-free path: pip builds the wheel in isolation, as for any user.
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(SDK), OPENAI_PIN],
                   check=True, timeout=600)
    return root


def run(venv_root: Path, *args: str, env: dict[str, str], input: str | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "OPENAI_", "DJANGO_"))}
    return subprocess.run(
        args, cwd=venv_root.parent, env={**clean, "PATH": f"{venv_root / 'bin'}:{clean['PATH']}", **env},
        capture_output=True, text=True, timeout=120, input=input,
    )


def test_the_sdk_installs_alone_with_its_command_and_types(fresh_venv: Path) -> None:
    python = str(fresh_venv / "bin" / "python")
    probe = run(fresh_venv, python, "-c", (
        "import importlib.util, pathlib, pulse_sdk;"
        "print(pulse_sdk.__version__);"
        "print((pathlib.Path(pulse_sdk.__file__).parent / 'py.typed').exists());"
        "print(importlib.util.find_spec('django') is None)"
    ), env={})
    assert probe.returncode == 0, probe.stderr
    version, typed, no_django = probe.stdout.split()
    assert version == "0.1.0" and typed == "True" and no_django == "True"
    help_text = run(fresh_venv, "pulse", "--help", env={})
    assert help_text.returncode == 0, help_text.stderr
    for command in ("login", "costs", "budgets", "benchmarks", "events", "tail"):
        assert command in help_text.stdout


def test_the_readme_quick_start_records_the_call_then_login_and_costs_show_it(
    fresh_venv: Path, pulse: LivePulse, simulator: SimulatedProvider,  # noqa: F811
) -> None:
    simulator.set_profile("gpt-4o-mini", DEFAULT_PROFILES["sim-fast"])
    script = fresh_venv.parent / "example.py"
    script.write_text(quickstart_code(), encoding="utf-8")
    config_dir = fresh_venv.parent / "config"
    env = {
        "PULSE_API_KEY": pulse.ingest_key, "PULSE_BASE_URL": pulse.url, "PULSE_CONFIG_DIR": str(config_dir),
        "OPENAI_BASE_URL": simulator.base_url_for("openai_compatible"), "OPENAI_API_KEY": "sk-sim",
    }
    example = run(fresh_venv, str(fresh_venv / "bin" / "python"), str(script), env=env)
    assert example.returncode == 0, example.stderr
    assert example.stdout.strip()  # the simulated model's answer
    # No flush in the example: the SDK sent it at interpreter exit.
    event = pulse.events().get()
    assert (event.model, event.source, event.success) == ("gpt-4o-mini", "sdk", True)
    assert event.input_tokens > 0 and event.output_tokens > 0 and event.latency_ms > 0

    login_env = {"PULSE_CONFIG_DIR": str(config_dir)}
    login = run(fresh_venv, "pulse", "login", "--base-url", pulse.url, "--token", "-", env=login_env,
                input=pulse.ingest_key + "\n")
    assert login.returncode == 0, login.stderr
    stored = config_dir / "config.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    costs = run(fresh_venv, "pulse", "costs", "--by", "model", env=login_env)
    assert costs.returncode == 0, costs.stderr
    assert "gpt-4o-mini" in costs.stdout


if sys.platform != "linux":  # the virtualenv layout above is POSIX's
    pytestmark = pytest.mark.skip("POSIX only")
