"""Email transport is chosen from the environment: an anymail ESP, SMTP via EMAIL_URL, or the
console. Settings are evaluated in a fresh interpreter so each environment is real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "print(json.dumps({'backend': settings.EMAIL_BACKEND, 'anymail': getattr(settings, 'ANYMAIL', None),"
    " 'host': getattr(settings, 'EMAIL_HOST', None), 'port': getattr(settings, 'EMAIL_PORT', None)}))"
)


def email_settings(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANYMAIL_", "EMAIL_"))}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT_ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "PULSE_ENV": "development", **env},
        capture_output=True, text=True, timeout=60, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_anymail_esp_and_its_settings_come_from_the_environment():
    found = email_settings(ANYMAIL_ESP="brevo", ANYMAIL_BREVO_API_KEY="xkeysib-test")
    assert found["backend"] == "anymail.backends.brevo.EmailBackend"
    assert found["anymail"] == {"BREVO_API_KEY": "xkeysib-test"}


def test_email_url_configures_smtp_for_the_mail_catcher():
    found = email_settings(EMAIL_URL="smtp://mailpit:1025")
    assert found["backend"] == "django.core.mail.backends.smtp.EmailBackend"
    assert (found["host"], found["port"]) == ("mailpit", 1025)


def test_local_default_is_the_console():
    assert email_settings()["backend"] == "django.core.mail.backends.console.EmailBackend"
