"""Whatever the machine holds (a config file in the wrong encoding, a base URL that is not one),
making a client and tracking never raise into the application: the client is disabled or ignores
the file, and says so in the log."""

from __future__ import annotations

import logging

import pulse_sdk
import pytest
from pulse_sdk import Client, config
from pulse_sdk import client as client_module

from .conftest import pulse_messages


def write_config(content: bytes) -> None:
    path = config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


@pytest.mark.parametrize("content", [b"\xff\xfe{\x00}\x00", b'{"api_key": "pk_\xe9"}', b"\x80" * 10])
def test_a_config_file_that_is_not_utf8_never_breaks_tracking(monkeypatch, content):
    write_config(content)
    monkeypatch.setattr(client_module, "_default", None)
    monkeypatch.setenv("PULSE_API_KEY", "pk_live_from_env")
    monkeypatch.setenv("PULSE_BASE_URL", "http://127.0.0.1:9")

    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load_file()
    assert config.resolve().api_key == "pk_live_from_env"  # the environment still works
    client = Client(flush_interval=60)
    assert client.enabled
    client.close(0)
    assert pulse_sdk.track(provider="openai", model="gpt-4o-mini") is not None
    pulse_sdk.get_client().close(0)


def test_a_base_url_whose_host_is_not_a_valid_name_disables_the_client(monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="pulse_sdk")
    monkeypatch.setattr(client_module, "_default", None)
    monkeypatch.setenv("PULSE_API_KEY", "pk_live_fine")
    monkeypatch.setenv("PULSE_BASE_URL", "http://xn--zz.example")

    assert pulse_sdk.track(provider="openai", model="gpt-4o-mini") is None
    assert not pulse_sdk.get_client().enabled
    (message,) = pulse_messages(caplog, logging.ERROR)
    assert "'http://xn--zz.example' is not a URL" in message and "(from the environment)" in message


def test_without_a_home_directory_the_environment_still_works(monkeypatch):
    """A container running as an arbitrary uid: no $HOME, no passwd entry."""
    import pwd

    def no_entry(uid: int) -> None:
        raise KeyError(uid)

    for name in ("PULSE_CONFIG_DIR", "HOME", "XDG_CONFIG_HOME", "APPDATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setattr(client_module, "_default", None)
    monkeypatch.setenv("PULSE_API_KEY", "pk_live_from_env")
    monkeypatch.setenv("PULSE_BASE_URL", "http://127.0.0.1:9")

    with pytest.raises(config.ConfigError, match="PULSE_CONFIG_DIR"):
        config.load_file()
    assert pulse_sdk.track(provider="openai", model="gpt-4o-mini") is not None
    pulse_sdk.get_client().close(0)


def test_a_fork_while_another_thread_makes_the_default_client_does_not_deadlock_the_child(monkeypatch):
    """gunicorn/celery fork whenever they like: a thread of the parent that was inside
    get_client() (holding its lock) at that moment does not exist in the child."""
    import os
    import signal

    monkeypatch.setattr(client_module, "_default", None)
    monkeypatch.setenv("PULSE_API_KEY", "pk_live_from_env")
    monkeypatch.setenv("PULSE_BASE_URL", "http://127.0.0.1:9")
    client_module._default_lock.acquire()  # as another thread in get_client() would hold it
    try:
        pid = os.fork()
        if pid == 0:  # the child: tracks, or is killed by the alarm if it hangs
            signal.alarm(5)
            try:
                ok = pulse_sdk.track(provider="openai", model="gpt-4o-mini") is not None
            finally:
                os._exit(0 if ok else 1)
    finally:
        client_module._default_lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
