"""Kafka security settings -> kwargs for kafka-python and credentials for Faust/aiokafka (no broker)."""
from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from stream.kafka.security import faust_security, kafka_python_security, ssl_context
from stream.settings import Settings

UNREACHABLE = "127.0.0.1:1"  # nothing listens there; clients below must not need it


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throw-away self-signed certificate for localhost: (certfile, keyfile)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(keyfile),
                    "-out", str(certfile), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return str(certfile), str(keyfile)


def sasl(protocol: str = "SASL_PLAINTEXT", mechanism: str = "PLAIN", **changes) -> Settings:
    return Settings.of(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="svc-streamrec",
                    sasl_password="s3cret", **changes)


def mtls(cert: tuple[str, str], protocol: str = "SSL", **changes) -> Settings:
    certfile, keyfile = cert
    base = dict(security_protocol=protocol, ssl_cafile=certfile, ssl_certfile=certfile, ssl_keyfile=keyfile)
    return Settings.of(**{**base, **changes})


# -- kafka-python --------------------------------------------------------------------------

def test_plaintext_adds_nothing():
    assert kafka_python_security(Settings()) == {}
    assert faust_security(Settings()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_kwargs(mechanism):
    assert kafka_python_security(sasl(mechanism=mechanism)) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
        "sasl_plain_username": "svc-streamrec", "sasl_plain_password": "s3cret"}


def test_ssl_kwargs_carry_only_the_files_that_are_set(cert):
    certfile, keyfile = cert
    assert kafka_python_security(Settings.of(security_protocol="SSL")) == {"security_protocol": "SSL"}
    assert kafka_python_security(Settings.of(security_protocol="SSL", ssl_cafile=certfile)) == {
        "security_protocol": "SSL", "ssl_cafile": certfile}
    assert kafka_python_security(mtls(cert, "SASL_SSL", sasl_username="u", sasl_password="p")) == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_plain_username": "u",
        "sasl_plain_password": "p", "ssl_cafile": certfile, "ssl_certfile": certfile, "ssl_keyfile": keyfile}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_clients_accept_the_kwargs(cert, mechanism):
    """Every key is a config key of all three clients and the mechanism is one kafka-python knows;
    producer and consumer objects are built for real (api_version given, so no connection)."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.net.sasl import SASL_MECHANISMS

    kwargs = kafka_python_security(mtls(cert, "SASL_SSL", sasl_mechanism=mechanism, sasl_username="u",
                                        sasl_password="p"))
    assert kwargs["sasl_mechanism"] in SASL_MECHANISMS
    for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert set(kwargs) <= set(client.DEFAULT_CONFIG), client.__name__
    producer = KafkaProducer(bootstrap_servers=[UNREACHABLE], api_version=(2, 5, 0), **kwargs)
    producer.close(timeout=1)
    consumer = KafkaConsumer(bootstrap_servers=[UNREACHABLE], api_version=(2, 5, 0), **kwargs)
    consumer.close()


@pytest.mark.parametrize("changes, message", [
    (dict(security_protocol="SASL_PLAINTEXT", sasl_password="p"), "needs STREAMREC_SASL_USERNAME"),
    (dict(security_protocol="SASL_SSL", sasl_username="u"), "needs STREAMREC_SASL_PASSWORD"),
    (dict(security_protocol="PLAINTEXT", sasl_username="u", sasl_password="p"), "would be ignored"),
    (dict(security_protocol="SSL", sasl_username="u", sasl_password="p"), "would be ignored"),
    (dict(security_protocol="SSL", ssl_certfile="CERT"), "without ssl_keyfile"),
    (dict(security_protocol="SSL", ssl_keyfile="KEY"), "without ssl_certfile"),
    (dict(security_protocol="SSL", ssl_cafile="/nonexistent/ca.pem"), "is not a readable file"),
    (dict(security_protocol="PLAINTEXT", ssl_cafile="CERT"), "would not use TLS"),
    (dict(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p", ssl_cafile="CERT"),
     "would not use TLS"),
])
def test_incomplete_or_contradictory_settings_are_refused(cert, changes, message):
    changes = {k: cert[0] if v == "CERT" else cert[1] if v == "KEY" else v for k, v in changes.items()}
    settings = Settings.of(**changes)
    for build in (kafka_python_security, faust_security):
        with pytest.raises(ValueError, match=message):
            build(settings)


def test_the_password_is_never_printed():
    settings = sasl()
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in repr(faust_security(settings))


# -- Faust / aiokafka ----------------------------------------------------------------------

def test_faust_credentials_for_each_protocol(cert):
    from faust.auth import SASLCredentials, SSLCredentials
    from faust.types.auth import AuthProtocol

    plain_sasl = faust_security(sasl(mechanism="SCRAM-SHA-256"))
    assert isinstance(plain_sasl, SASLCredentials) and plain_sasl.protocol is AuthProtocol.SASL_PLAINTEXT
    assert (plain_sasl.username, plain_sasl.password, plain_sasl.mechanism.value) == (
        "svc-streamrec", "s3cret", "SCRAM-SHA-256")
    assert plain_sasl.ssl_context is None

    tls = faust_security(mtls(cert))
    assert isinstance(tls, SSLCredentials) and tls.protocol is AuthProtocol.SSL
    assert tls.context.verify_mode is ssl.CERT_REQUIRED and tls.context.check_hostname

    sasl_tls = faust_security(mtls(cert, "SASL_SSL", sasl_username="u", sasl_password="p"))
    assert isinstance(sasl_tls, SASLCredentials) and sasl_tls.protocol is AuthProtocol.SASL_SSL
    assert isinstance(sasl_tls.ssl_context, ssl.SSLContext)


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_aiokafka_clients_accept_what_faust_hands_them(cert, protocol):
    """Faust turns broker_credentials into aiokafka kwargs; aiokafka validates them in __init__."""
    import faust
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = {"SSL": mtls(cert), "SASL_PLAINTEXT": sasl(),
                "SASL_SSL": mtls(cert, "SASL_SSL", sasl_username="u", sasl_password="p")}[protocol]
    credentials = faust_security(settings)
    app = faust.App("security-test", broker=f"kafka://{UNREACHABLE}", broker_credentials=credentials)
    assert app.conf.broker_credentials is credentials
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == protocol

    async def build() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=UNREACHABLE, **auth)
        consumer = AIOKafkaConsumer(bootstrap_servers=UNREACHABLE, **auth)
        assert producer.client._security_protocol == protocol
        assert consumer._client._security_protocol == protocol
        await producer.stop()  # never started: stop just releases it
        await consumer.stop()

    asyncio.run(build())


def _tls_server(cert: tuple[str, str], require_client_cert: bool) -> tuple[socket.socket, threading.Thread, dict]:
    certfile, keyfile = cert
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certfile, keyfile)
    if require_client_cert:
        server_context.verify_mode = ssl.CERT_REQUIRED
        server_context.load_verify_locations(certfile)
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, seen


def test_the_ssl_context_does_a_mutual_tls_handshake(cert):
    """The context verifies the server against ssl_cafile (host name checked) and presents the client cert."""
    listener, thread, seen = _tls_server(cert, require_client_cert=True)
    try:
        context = ssl_context(mtls(cert))
        with socket.create_connection(listener.getsockname(), timeout=5) as sock:
            with context.wrap_socket(sock, server_hostname="localhost") as tls:
                assert tls.recv(2) == b"ok"
        thread.join(5)
    finally:
        listener.close()
    assert "error" not in seen and seen["peer"]["subject"] == ((("commonName", "localhost"),),)


def test_the_ssl_context_rejects_a_server_it_cannot_verify(cert):
    """Without our CA the self-signed server must be refused (no silent CERT_NONE)."""
    listener, thread, _ = _tls_server(cert, require_client_cert=False)
    try:
        context = ssl_context(Settings.of(security_protocol="SSL"))  # system CAs only
        with socket.create_connection(listener.getsockname(), timeout=5) as sock:
            with pytest.raises(ssl.SSLCertVerificationError):
                context.wrap_socket(sock, server_hostname="localhost")
        thread.join(5)
    finally:
        listener.close()


# -- where the settings are wired -------------------------------------------------------------

def test_clients_from_settings_carry_the_security_kwargs_without_connecting():
    from stream.kafka.clients import EventPublisher, RecommendationConsumer, RequestPublisher

    settings = sasl(bootstrap_servers=UNREACHABLE, topic_events="ev", topic_requests="rq",
                    topic_recommendations="rc")
    expected = kafka_python_security(settings)
    publisher = EventPublisher.from_settings(settings, batch_events=10, extra_config={"linger_ms": 7})
    assert publisher.topic == "ev" and publisher.batch_events == 10
    assert publisher.extra_config == {**expected, "linger_ms": 7}
    requests = RequestPublisher.from_settings(settings)
    assert requests.topic == "rq" and requests.extra_config == expected
    consumer = RecommendationConsumer.from_settings(settings, from_beginning=True)
    assert consumer.topic == "rc" and consumer.from_beginning and consumer.extra_config == expected
    assert publisher._producer is None and requests._producer is None and consumer._consumer is None


def test_clients_hand_the_security_kwargs_to_kafka_python(monkeypatch):
    import kafka

    from stream.kafka.clients import RecommendationConsumer, RequestPublisher

    built = []

    class Fake:
        def __init__(self, **config):
            built.append(config)

        def send(self, *args, **kwargs):
            return None

        def flush(self, *args):
            return None

        def partitions_for_topic(self, topic):
            return {0}

        def assign(self, partitions):
            return None

        def seek_to_end(self, *partitions):
            return None

        def position(self, tp):
            return 0

    monkeypatch.setattr(kafka, "KafkaProducer", Fake)
    monkeypatch.setattr(kafka, "KafkaConsumer", Fake)
    settings = sasl(bootstrap_servers=UNREACHABLE)
    RequestPublisher.from_settings(settings, extra_config={"linger_ms": 3}).request("u1")
    RecommendationConsumer.from_settings(settings).connect()
    expected = kafka_python_security(settings)
    assert len(built) == 2
    for config in built:
        assert expected.items() <= config.items()
    assert built[0]["linger_ms"] == 3  # extra_config overrides a client default instead of clashing


def test_broker_admin_helpers_pass_the_security_kwargs(monkeypatch):
    import kafka

    from stream.kafka.broker import create_topics, wait_for_broker
    from stream.wire.topics import TopicSpec

    built = []

    class FakeAdmin:
        def __init__(self, **config):
            built.append(config)

        def list_topics(self):
            return ["a"]

        def close(self):
            return None

    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)
    security = kafka_python_security(sasl())
    wait_for_broker(UNREACHABLE, timeout=1, security=security)
    assert create_topics(UNREACHABLE, [TopicSpec("a")], security=security) == []
    assert len(built) == 2 and all(security.items() <= config.items() for config in built)


def test_metrics_and_health_bind_to_loopback_by_default_and_are_configurable():
    from stream.app import create_app
    from stream.cli.processes import worker_environment

    assert Settings().metrics.host == "127.0.0.1"
    assert Settings.from_env({}).metrics.host == "127.0.0.1"
    assert create_app(Settings()).conf.web_bind == "127.0.0.1"
    settings = Settings.from_env({"STREAMREC_METRICS_HOST": "0.0.0.0", "STREAMREC_METRICS_PORT": "7001"})
    app = create_app(settings)
    assert (app.conf.web_bind, app.conf.web_port) == ("0.0.0.0", 7001)
    assert worker_environment(Settings())["STREAMREC_METRICS_HOST"] == "127.0.0.1"  # what the demo's worker gets


def test_the_worker_app_gets_the_credentials():
    from faust.auth import SASLCredentials

    from stream.app import create_app

    app = create_app(sasl())
    assert isinstance(app.conf.broker_credentials, SASLCredentials)
    assert app.conf.broker_credentials.username == "svc-streamrec"


def test_the_replica_reader_s_aiokafka_client_gets_the_same_credentials():
    from aiokafka import AIOKafkaConsumer

    from stream.kafka.security import aiokafka_security

    kwargs = aiokafka_security(sasl())
    assert kwargs["sasl_plain_username"] == "svc-streamrec" and kwargs["security_protocol"] == sasl().security.protocol
    async def build():
        return AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", **kwargs)  # accepted without connecting

    import asyncio

    asyncio.run(build())
    assert aiokafka_security(Settings()) == {}
