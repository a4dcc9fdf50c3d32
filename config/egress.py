"""Where Pulse may send requests on a tenant's behalf.

Webhook URLs are typed in by tenants, so without a check a hosted Pulse would POST to whatever
they name: the cloud metadata service (169.254.169.254), localhost, the cluster's private
addresses. `refusal(url)` resolves the host and returns why Pulse will not send there, or None.

`TENANT_EGRESS_ALLOW_PRIVATE` switches the check off. It is on (private addresses refused) in
production and off elsewhere, because local development and the tests post to 127.0.0.1;
a self-hosted Pulse whose chat server lives on the private network sets it to true.

The address is checked when the URL is saved and again before each request. A DNS answer that
changes between the check and the connection (rebinding) is not caught; pinning the checked
address into the connection is the next step if that matters.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


def refusal(url: str) -> str | None:
    if settings.TENANT_EGRESS_ALLOW_PRIVATE:
        return None
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return "The URL has no host."
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError, ValueError):
        return None  # unresolvable now: the request fails (and is retried) like any unreachable host
    for address in sorted(addresses):
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global:
            return f"{host} is a private, local or reserved address ({ip}); Pulse does not send requests there."
    return None
