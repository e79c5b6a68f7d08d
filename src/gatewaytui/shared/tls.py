"""One TLS context for the package's aiohttp sessions (the relay worker, backend calls).

Verification uses the CA bundle httpx used: `SSL_CERT_FILE` or `SSL_CERT_DIR` if set, else
certifi's (aiohttp's own default would be the system store, which a slim container may lack).
"""

from __future__ import annotations

import functools
import os
import ssl

import certifi  # the bundle httpx verified with


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One shared TLS context: loading the CA bundle costs ~20 ms each time."""
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    return ssl.create_default_context(cafile=certifi.where())
