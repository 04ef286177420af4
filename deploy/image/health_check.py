#!/usr/bin/env python
"""Exit 0 if the local Settle service answers SERVING on the standard gRPC health service.

Installed in the image as `settle-grpc-health`. docker compose uses it as the services' healthcheck;
Kubernetes uses its native gRPC probes, and this is the exec-probe fallback where the kubelet cannot
probe the port (mTLS, or a cluster without TLS gRPC probes; docs/DEPLOY.md). It speaks what the server
speaks, from the same variables: plaintext when SETTLE_TLS_MODE=off, otherwise TLS trusting
SETTLE_TLS_CA_FILE, presenting the service's own certificate when SETTLE_TLS_MODE=mtls.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="settle-grpc-health", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SETTLE_GRPC_PORT", "50051")))
    parser.add_argument("--service", default="", help='health service name; "" (default) is the whole server')
    parser.add_argument("--timeout-s", type=float, default=3.0)
    parser.add_argument("--tls-server-name", default=None, help="a name in the server certificate (TLS only)")
    return parser.parse_args()


def _read(variable: str) -> bytes | None:
    path = os.environ.get(variable)
    return Path(path).read_bytes() if path else None


def _channel(target: str, server_name: str | None) -> grpc.Channel:
    # The services default to TLS (services/common/config.py), so this does too.
    mode = os.environ.get("SETTLE_TLS_MODE", "tls").lower()
    if mode == "off":
        return grpc.insecure_channel(target)
    mutual = mode == "mtls"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read("SETTLE_TLS_CA_FILE"),
        private_key=_read("SETTLE_TLS_KEY_FILE") if mutual else None,
        certificate_chain=_read("SETTLE_TLS_CERT_FILE") if mutual else None,
    )
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(target, credentials, options=options)


def main() -> int:
    options = _parse_args()
    target = f"{options.host}:{options.port}"
    with _channel(target, options.tls_server_name) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=options.service), timeout=options.timeout_s
            )
        except grpc.RpcError as error:
            print(f"{target}: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    print(f"{target}: {status}")
    return 0 if response.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
