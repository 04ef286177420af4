"""Starts and stops a whole Settle: infrastructure, PSP sandbox and the five services as processes."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.api_key_store import RECORDS_FILE
from services.cli.certificates import LocalTls, ensure_local_tls
from services.cli.endpoints import DEFAULT_PORTS, DEFAULT_SANDBOX_PORT, SERVICES, ApiKeys, Endpoints
from services.common import clients
from services.common.infra import Infrastructure, choose_mode, start_infrastructure
from services.common.migrations import upgrade

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 20.0


class StackError(RuntimeError):
    """A part of Settle did not start; the message names it and quotes its log."""


def free_port(preferred: int = 0, host: str = "127.0.0.1") -> int:
    """`preferred` if nothing listens there, else any free port."""
    for candidate in (preferred, 0) if preferred else (0,):
        with socket.socket() as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise StackError("no free TCP port")


@dataclass
class Stack:
    data_dir: Path
    infra: Infrastructure
    endpoints: Endpoints
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    owns_infra: bool = True
    environments: dict[str, dict[str, str]] = field(default_factory=dict)  # each service's, for restarts

    def log_path(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def stop(self) -> None:
        """Stops services first (they drain their outboxes), then the sandbox, then infrastructure."""
        for name in [*SERVICES, "psp_sandbox"]:
            process = self.processes.get(name)
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()
        Endpoints.remove(self.data_dir)
        if self.owns_infra:
            self.infra.close()

    def exited(self) -> dict[str, int]:
        """Processes that have ended unexpectedly, with their exit codes."""
        return {name: code for name, p in self.processes.items() if (code := p.poll()) is not None}

    def kill(self, name: str) -> int:
        """SIGKILL, as the OOM killer or a power cut would; returns the exit code (-9)."""
        process = self.processes[name]
        if process.poll() is None:
            process.kill()
        return process.wait()

    def respawn(self, name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Starts a service whose process has ended, with its environment plus `extra_env`."""
        if self.processes[name].poll() is None:
            raise StackError(f"{name} is still running; kill it first")
        process = _spawn(self, name, [f"services.{name}"], {**self.environments[name], **(extra_env or {})})
        self.processes[name] = process
        self.endpoints.pids[name] = process.pid  # so that `settle status` follows the new process
        self.endpoints.save(self.data_dir)
        return process

    def wait_until_serving(self, name: str) -> None:
        _wait_until_serving(self, name, self.endpoints.grpc[name])

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.log_path(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def start_stack(
    data_dir: Path,
    *,
    infra: Infrastructure | None = None,
    fixed_ports: bool = True,
    extra_env: dict[str, str] | None = None,
    mtls: bool = False,
) -> Stack:
    """Starts everything and waits until every service reports SERVING. Stops what it started on failure.

    The services serve TLS only (with `mtls`, they also require a client certificate signed by the
    stack's CA); the CA and certificates are made on first start in `<data_dir>/tls/` and reused.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    owns_infra = infra is None
    infrastructure = infra or start_infrastructure(choose_mode(), data_dir)
    keys = ApiKeys.load_or_create(data_dir)
    keys.save(data_dir)  # (re)writes the hashed records the services read, also for older key files
    local_tls = ensure_local_tls(data_dir / "tls", SERVICES)
    tls_mode = "mtls" if mtls else "tls"
    sandbox_port = free_port(DEFAULT_SANDBOX_PORT if fixed_ports else 0)
    # The sandbox signs webhook events for the executor's endpoint; a new secret per start, since only the
    # two processes started here share it. It goes through the environment, not argv (visible in `ps`).
    webhook_port = free_port(0)
    webhook_secret = f"whsec_{secrets.token_hex(24)}"
    ports = {name: free_port(DEFAULT_PORTS[name] if fixed_ports else 0) for name in SERVICES}
    metrics_ports = {name: free_port(0) for name in SERVICES}  # Prometheus /metrics of each service
    endpoints = Endpoints(
        grpc={name: f"127.0.0.1:{port}" for name, port in ports.items()},
        psp_sandbox_url=f"http://127.0.0.1:{sandbox_port}",
        api_keys=keys,
        database_url=infrastructure.database_url,
        kafka_bootstrap_servers=infrastructure.kafka_bootstrap_servers,
        infra_mode=infrastructure.mode,
        pg_host=infrastructure.pg_host,
        tls=clients.ClientTls(local_tls.ca_cert, local_tls.client_cert, local_tls.client_key),
        tls_mode=tls_mode,
        metrics={name: f"http://127.0.0.1:{port}/metrics" for name, port in metrics_ports.items()},
    )
    stack = Stack(data_dir, infrastructure, endpoints, owns_infra=owns_infra)
    try:
        for service in SERVICES:
            upgrade(service, infrastructure.database_url)
        base_env = {
            **_inherited_env(),
            "SETTLE_DATABASE_URL": infrastructure.database_url,
            "SETTLE_KAFKA_BOOTSTRAP_SERVERS": infrastructure.kafka_bootstrap_servers,
            # Services get only the hashed records; the plaintext keys stay in api_keys.json for the CLI.
            "SETTLE_API_KEYS_FILE": str(data_dir / RECORDS_FILE),
            **_tls_env(local_tls, tls_mode),
            "SETTLE_PSP_API_BASE": endpoints.psp_sandbox_url,
            **(extra_env or {}),
        }
        sandbox_dir = data_dir / "psp_sandbox"
        stack.processes["psp_sandbox"] = _spawn(
            stack, "psp_sandbox",
            ["psp_sandbox", "--port", str(sandbox_port), "--data-dir", str(sandbox_dir),
             "--webhook-url", f"http://127.0.0.1:{webhook_port}/webhooks/psp"],
            {**base_env, "PSP_SANDBOX_WEBHOOK_SECRET": webhook_secret},
        )  # fmt: skip
        _wait_for_port(stack, "psp_sandbox", sandbox_port)
        for service in SERVICES:
            env = {
                **base_env,
                "SETTLE_GRPC_PORT": str(ports[service]),
                "SETTLE_METRICS_PORT": str(metrics_ports[service]),
            }
            if service == "executor":
                # A stable id lets a restarted executor free its crashed predecessor's claims at once.
                env = {"SETTLE_WORKER_ID": "executor-0", **env}
                # Events the sandbox sends before this listens are retried by the sandbox until it does.
                env = {**env, "SETTLE_WEBHOOK_PORT": str(webhook_port), "SETTLE_WEBHOOK_SECRET": webhook_secret}
            if service == "reconciliation":
                # Booking reported fees (SETTLE_BOOK_PSP_FEES) calls the ledger's admin API. The nightly run
                # takes Stripe's reports from the sandbox, as it would from Stripe, with the PSP key the
                # executor has (inherited, or both use the sandbox's default).
                env = {
                    "SETTLE_LEDGER_GRPC_ADDRESS": endpoints.grpc["ledger"],
                    "SETTLE_LEDGER_API_KEY": keys.admin,
                    "SETTLE_SETTLEMENT_SOURCE": "stripe_report",
                    **env,
                }
            stack.environments[service] = env
            stack.processes[service] = _spawn(stack, service, [f"services.{service}"], env)
        for service in SERVICES:
            _wait_until_serving(stack, service, endpoints.grpc[service])
        endpoints.pids = {name: process.pid for name, process in stack.processes.items()}
        endpoints.save(data_dir)
    except BaseException:
        stack.stop()
        raise
    return stack


# What `settle up` sets for every service; inherited values of these (in either form, X or X_FILE) are
# dropped so that a stray SETTLE_API_KEYS in the shell neither overrides nor conflicts with the stack's.
_OWN_SETTINGS = frozenset(
    {
        "SETTLE_DATABASE_URL",
        "SETTLE_KAFKA_BOOTSTRAP_SERVERS",
        "SETTLE_API_KEYS",
        "SETTLE_TLS_MODE",
        "SETTLE_TLS_CERT_FILE",
        "SETTLE_TLS_KEY_FILE",
        "SETTLE_TLS_CA_FILE",
        "SETTLE_LEDGER_API_KEY",
    }
)


def _inherited_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in _OWN_SETTINGS and name.upper().removesuffix("_FILE") not in _OWN_SETTINGS
    }


def _tls_env(files: LocalTls, mode: str) -> dict[str, str]:
    """The services' TLS settings: the one certificate all of them serve (and, under mTLS, present as
    clients of each other) and the CA that checks client certificates."""
    return {
        "SETTLE_TLS_MODE": mode,
        "SETTLE_TLS_CERT_FILE": str(files.server_cert),
        "SETTLE_TLS_KEY_FILE": str(files.server_key),
        "SETTLE_TLS_CA_FILE": str(files.ca_cert),
    }


def _spawn(stack: Stack, name: str, module_and_args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Runs `python -m MODULE ARGS` through services.cli.child, so that it dies with this process."""
    log = stack.log_path(name).open("ab")
    # A new session: Ctrl-C reaches `settle up` only, which then stops the children in order.
    return subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        [sys.executable, "-m", "services.cli.child", str(os.getpid()), *module_and_args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _check_alive(stack: Stack, name: str) -> None:
    code = stack.processes[name].poll()
    if code is not None:
        raise StackError(f"{name} exited with code {code} while starting; its log ends with:\n{stack.tail(name)}")


def _wait_for_port(stack: Stack, name: str, port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        _check_alive(stack, name)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise StackError(f"{name} did not listen on port {port} within {_START_TIMEOUT_S:.0f} s")


def _wait_until_serving(stack: Stack, name: str, address: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    with clients.sync_channel(address, stack.endpoints.tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            _check_alive(stack, name)
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise StackError(f"{name} was not SERVING at {address} within {_START_TIMEOUT_S:.0f} s:\n{stack.tail(name)}")
