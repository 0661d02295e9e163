"""Kafka security settings for both clients: kafka-python and Faust (aiokafka).

``Settings`` holds one set of security fields (``security_protocol``,
``sasl_*``, ``ssl_*``); this module turns them into what each client takes:

* :func:`kafka_python_security` -> keyword arguments for ``KafkaProducer``,
  ``KafkaConsumer`` and ``KafkaAdminClient`` (only the keys that are set);
* :func:`faust_security` -> the Faust app's ``broker_credentials``
  (``SASLCredentials`` / ``SSLCredentials`` with an ``ssl.SSLContext``), or
  ``None`` for PLAINTEXT.

Both validate first and raise one :class:`ValueError` that names every problem,
so a half-configured client fails at start-up instead of silently talking
plaintext or failing a handshake minutes later.
"""
from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from faust.auth import Credentials

    from stream.settings import Settings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


def check_security(settings: Settings) -> None:
    """Raise :class:`ValueError` listing every problem of the security settings."""
    protocol = settings.security.protocol
    problems = []
    if protocol in SASL_PROTOCOLS:
        if not settings.security.sasl_username:
            problems.append(f"{protocol} needs STREAMREC_SASL_USERNAME")
        if not settings.security.sasl_password:
            problems.append(f"{protocol} needs STREAMREC_SASL_PASSWORD")
    elif settings.security.sasl_username or settings.security.sasl_password:
        problems.append(f"SASL user name/password are set but security_protocol is {protocol}: they would be "
                        "ignored; use SASL_PLAINTEXT or SASL_SSL")
    ssl_files = {"ssl_cafile": settings.security.ssl_cafile, "ssl_certfile": settings.security.ssl_certfile,
                 "ssl_keyfile": settings.security.ssl_keyfile}
    if protocol in SSL_PROTOCOLS:
        if settings.security.ssl_certfile and not settings.security.ssl_keyfile:
            problems.append("ssl_certfile is set without ssl_keyfile (mutual TLS needs both)")
        if settings.security.ssl_keyfile and not settings.security.ssl_certfile:
            problems.append("ssl_keyfile is set without ssl_certfile (mutual TLS needs both)")
        for name, path in ssl_files.items():
            if path and not os.path.isfile(path):
                problems.append(f"{name} {path!r} is not a readable file")
    elif any(ssl_files.values()):
        set_names = ", ".join(name for name, path in ssl_files.items() if path)
        problems.append(f"{set_names} set but security_protocol is {protocol}: the connection would not use "
                        "TLS; use SSL or SASL_SSL")
    if problems:
        raise ValueError("invalid Kafka security settings: " + "; ".join(problems))


def kafka_python_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients; ``{}`` for PLAINTEXT.

    SASL adds ``sasl_mechanism`` and ``sasl_plain_username``/``_password`` (kafka-python uses
    those names for SCRAM too); SSL adds the ``ssl_*`` files that are set.
    """
    check_security(settings)
    protocol = settings.security.protocol
    if protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol in SASL_PROTOCOLS:
        out.update(sasl_mechanism=settings.security.sasl_mechanism, sasl_plain_username=settings.security.sasl_username,
                   sasl_plain_password=settings.security.sasl_password)
    if protocol in SSL_PROTOCOLS:
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings.security, name):
                out[name] = getattr(settings.security, name)
    return out


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client-side TLS context: verifies the brokers (``ssl_cafile`` or the system CAs,
    host name checked) and presents ``ssl_certfile``/``ssl_keyfile`` when they are set."""
    check_security(settings)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.security.ssl_cafile or None)
    if settings.security.ssl_certfile:
        context.load_cert_chain(settings.security.ssl_certfile, settings.security.ssl_keyfile or None)
    return context


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for a plain aiokafka client (the replica reader); ``{}`` for PLAINTEXT.

    kafka-python's, with the certificate files turned into one ``ssl_context`` (aiokafka's way).
    """
    out = {key: value for key, value in kafka_python_security(settings).items() if not key.startswith("ssl_")}
    if settings.security.protocol in SSL_PROTOCOLS:
        out["ssl_context"] = ssl_context(settings)
    return out


def faust_security(settings: Settings) -> Credentials | None:
    """The Faust app's ``broker_credentials``: ``None`` for PLAINTEXT."""
    check_security(settings)
    protocol = settings.security.protocol
    if protocol == "PLAINTEXT":
        return None
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(settings) if protocol in SSL_PROTOCOLS else None
    if protocol == "SSL":
        return SSLCredentials(context)
    # SASLCredentials switches its protocol to SASL_SSL when it is given a context.
    return SASLCredentials(username=settings.security.sasl_username, password=settings.security.sasl_password,
                           mechanism=settings.security.sasl_mechanism, ssl_context=context)
