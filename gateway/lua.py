"""Lua scripts, registered once per Redis client (or pipeline).

    await registered_script(r, SOURCE)(keys=[...], args=[...])

redis-py's `register_script` runs a script by EVALSHA and loads it again on NOSCRIPT (a Redis
restart, a failover); a pipeline loads the scripts queued on it before executing."""

from __future__ import annotations

import weakref

_registered: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def registered_script(client, source: str):
    scripts = _registered.get(client)
    if scripts is None:
        scripts = _registered[client] = {}
    script = scripts.get(source)
    if script is None:
        script = scripts[source] = client.register_script(source)
    return script
