"""The gRPC channel every client call goes through: TLS when asked, the API key on every call."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import grpc

from medcompute.proto import wire

__all__ = ["open_channel", "round_robin", "connection", "API_KEY_ENV", "MESSAGE_LIMIT"]

API_KEY_ENV = "MEDCOMPUTE_API_KEY"
MESSAGE_LIMIT = wire.MAX_MESSAGE_BYTES + (64 << 10)


class _Details(collections.namedtuple(
        "_Details", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                     "compression")), grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <key>`` to the metadata of every call."""

    def __init__(self, api_key: str):
        self._header = ("authorization", f"Bearer {api_key}")

    def _details(self, d):
        metadata = [*(d.metadata or ()), self._header]
        return _Details(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready,
                        d.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._details(details), requests)


def _read(path) -> bytes | None:
    return Path(path).read_bytes() if path else None


def round_robin(address: str) -> bool:
    """Whether ``address`` names several servers (a gRPC target such as
    ``ipv4:127.0.0.1:50051,127.0.0.1:50052``) that calls are spread over."""
    return "," in address


def open_channel(address: str, *, api_key: str | None = None, tls_ca=None, tls_cert=None,
                 tls_key=None) -> grpc.Channel:
    """A channel to ``address``.

    ``api_key`` defaults to ``$MEDCOMPUTE_API_KEY``. TLS is used when any of ``tls_ca``
    (the CA that signed the server's certificate; default: the system's), ``tls_cert`` and
    ``tls_key`` (a client certificate, for mTLS) is given.
    """
    options = [("grpc.max_receive_message_length", MESSAGE_LIMIT),
               ("grpc.max_send_message_length", MESSAGE_LIMIT)]
    if round_robin(address):
        # Several servers (ipv4:127.0.0.1:A,127.0.0.1:B): each call goes to the next one
        # that is up, instead of every call to the first.
        options.append(("grpc.lb_policy_name", "round_robin"))
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("tls_cert and tls_key: give both (a client certificate and its key)")
    if tls_ca or tls_cert:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls_ca), private_key=_read(tls_key),
            certificate_chain=_read(tls_cert))
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if api_key:
        channel = grpc.intercept_channel(channel, _BearerToken(api_key))
    return channel


def connection(args) -> dict:
    """The connection keywords (API key, TLS files) of a parsed command line."""
    return {k: getattr(args, k, None) for k in ("api_key", "tls_ca", "tls_cert", "tls_key")}
