"""The mirror lab: a local data plane that behaves like VPC Traffic Mirroring, built from network namespaces.

Namespaces (all named after the lab's prefix, so parallel labs never collide):
  <prefix>-fabric      two Linux bridges: "svc" is the subnet the ENIs sit in, "under" is the underlay
  <prefix>-task-NAME   eth0 is the task's ENI (on svc, with its private IP); ul0 is its underlay link
  <prefix>-client-NAME eth0 on svc
  <prefix>-collector   eth0 on the underlay, with the mirror target's private IP
A mirror copies every frame in and out of a task's eth0 (tc u32 + mirred) into a VXLAN device that sends to
the collector over the underlay, never over the subnet, as a mirror session does with its VNI. The consumer
opens its UDP socket inside the collector namespace (open_udp_socket).

Servers written in Python run in this process (their sockets are created inside the task namespace);
PostgreSQL, Redis, psql and redis-cli run as processes inside the namespaces. Everything the lab creates is
recorded as it goes and undone in reverse by down(), also when up() fails halfway.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import ipaddress
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from verifier.errors import InputError

T = TypeVar("T")

VXLAN_PORT = 4789
UNDERLAY_MTU = 9001  # as in a VPC: a full 1514-byte frame plus 50 bytes of VXLAN needs no fragmenting
VXLAN_OVERHEAD = 50
MIRROR_DEVICE = "vxmirror"
# Software checksums and no segmentation offload, so the mirror carries wire-sized frames with valid
# checksums instead of 64 KiB GSO super-packets with partial checksums.
NO_OFFLOADS = ("tx", "off", "tso", "off", "gso", "off", "gro", "off")
COMMAND_TIMEOUT_S = 30
READY_TIMEOUT_S = 20
CLIENT_TIMEOUT_S = 10
HTTP_BODY = b"ok\n"

_CLONE_NEWNET = 0x40000000  # <sched.h>
_libc = ctypes.CDLL(None, use_errno=True)
_NAME = re.compile(r"[a-z0-9]{1,12}")
NOT_ROOT = "the mirror lab needs root (network namespaces): run with sudo"


def _run(argv: list[str], namespace: str | None = None, stdin: str | None = None) -> str:
    """Runs a command (inside a namespace if given) and returns its stdout; failure is one InputError line."""
    if namespace is not None:
        argv = ["ip", "netns", "exec", namespace, *argv]
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"mirror lab: {' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise InputError(f"mirror lab: {' '.join(argv)} failed: {detail[0]}")
    return done.stdout


def _batch(tool: str, namespace: str, commands: list[str]) -> None:
    """Several `ip` or `tc` commands in one process, inside a namespace; stops at the first that fails."""
    _run([tool, "-n", namespace, "-batch", "-"], stdin="\n".join(commands) + "\n")


def _require(tools: tuple[str, ...]) -> None:
    if os.geteuid() != 0:
        raise InputError(NOT_ROOT)
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise InputError(f"the mirror lab needs {', '.join(missing)}, not found on PATH")


def _in_namespace(namespace: str, make: Callable[[], T]) -> T:
    """Calls make() in a short-lived thread that has entered the namespace, so sockets it creates live there.

    setns(CLONE_NEWNET) changes only the calling thread, and a socket keeps the namespace it was created in,
    so the returned socket (or server) can be used from any thread afterwards."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def enter_and_make() -> None:
        try:
            with open(f"/run/netns/{namespace}", "rb") as netns:
                if _libc.setns(netns.fileno(), _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, os.strerror(errno))
            outcome.append(make())
        except BaseException as exc:  # handed to the calling thread, which raises it
            failure.append(exc)

    thread = threading.Thread(target=enter_and_make, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def socket_factory(namespace: str) -> Callable[[int, int, int], socket.socket]:
    """socket.socket's signature, making each socket inside the namespace (a probe from a peer's vantage)."""

    def make(family: int, kind: int, proto: int) -> socket.socket:
        return _in_namespace(namespace, lambda: socket.socket(family, kind, proto))

    return make


def open_udp_socket(namespace: str, host: str, port: int) -> socket.socket:
    """A UDP socket bound to host:port inside the network namespace; the caller owns (and closes) it."""

    def bound() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return sock

    try:
        return _in_namespace(namespace, bound)
    except FileNotFoundError as exc:
        raise InputError(f"mirror lab: no network namespace {namespace}") from exc
    except OSError as exc:
        raise InputError(f"mirror lab: cannot bind UDP {host}:{port} in {namespace}: {exc.strerror}") from exc


def _tcp_connection(namespace: str, host: str, port: int) -> socket.socket:
    sock = _in_namespace(namespace, lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    try:
        sock.settimeout(CLIENT_TIMEOUT_S)
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _namespace_pids(namespace: str) -> list[int]:
    listing = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    ).stdout
    return [int(pid) for pid in listing.split() if int(pid) != os.getpid()]


def lab_namespaces(prefix: str) -> list[str]:
    """The namespaces that exist now and belong to a lab with this prefix (prefixes hold no "-")."""
    listing = _run(["ip", "netns", "list"])
    names = [line.split()[0] for line in listing.splitlines() if line.strip()]
    fixed = (f"{prefix}-fabric", f"{prefix}-collector")
    return [
        name for name in names if name in fixed or name.startswith((f"{prefix}-task-", f"{prefix}-client-"))
    ]


def delete_namespace(namespace: str) -> None:
    """Ends every process still inside the namespace (only the lab starts any there), then deletes it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _namespace_pids(namespace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(50):
            if not _namespace_pids(namespace):
                break
            time.sleep(0.1)
    subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=COMMAND_TIMEOUT_S)


def _postgres_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise InputError("the mirror lab needs the PostgreSQL server (apt-get install postgresql)")
    return found[-1].parent


# --------------------------------------------------------------------------- handles


class Peer:
    """A running server; stop() ends it and may be called any number of times."""

    def __init__(self, description: str, stop: Callable[[], None]) -> None:
        self.description = description
        self._stop: Callable[[], None] | None = stop

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


class TrafficClient:
    """A client in a client namespace. run_once() makes one round of connections and raises InputError when
    it fails; start() loops `count` rounds in a background thread, `pause` seconds apart, recording failures
    instead of raising them."""

    def __init__(self, description: str, one_round: Callable[[], None], count: int, pause: float) -> None:
        self.description = description
        self._one_round = one_round
        self.count = count
        self.pause = pause
        self.rounds = 0
        self.failures: list[str] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        try:
            self._one_round()
        except OSError as exc:  # includes ssl.SSLError and socket timeouts
            raise InputError(f"mirror lab: {self.description}: {exc}") from exc
        self.rounds += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.description, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        for done in range(self.count):
            try:
                self.run_once()
            except InputError as exc:
                self.failures.append(str(exc))
            if done + 1 < self.count and self._stopping.wait(self.pause):
                return

    def wait(self, timeout: float) -> bool:
        """True when the background loop has finished (or was never started)."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def stop(self) -> None:
        self._stopping.set()
        self.wait(COMMAND_TIMEOUT_S)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mirror-lab/1"
    timeout = CLIENT_TIMEOUT_S

    def setup(self) -> None:
        # The TLS handshake runs here, in the connection's thread, so a silent client stalls only itself.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(CLIENT_TIMEOUT_S)
            self.request.do_handshake()
        super().setup()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(HTTP_BODY)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(HTTP_BODY)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # no per-request lines on stderr
        pass


class _HttpServer(socketserver.ThreadingTCPServer):
    """A tiny HTTP(S) server; with a TLS context every accepted connection is wrapped in it."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        connection, peer = self.socket.accept()
        if self.tls is not None:
            connection = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, peer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up mid-request is the client's business, not a lab failure


# --------------------------------------------------------------------------- the lab


class Lab:
    """Namespaces, links, mirrors, servers and clients; see the module docstring for the topology.

    tasks and clients map short names ([a-z0-9], at most 12) to an address with its prefix length in the
    subnet, e.g. {"api": "10.0.1.25/24"}; collector_address is the mirror target's, e.g. "10.0.2.10/24",
    and the tasks' underlay links take the first free addresses of its network."""

    def __init__(
        self,
        tasks: Mapping[str, str],
        clients: Mapping[str, str],
        collector_address: str,
        prefix: str = "vlab",
    ) -> None:
        for name in (prefix, *tasks, *clients):
            if not _NAME.fullmatch(name):
                raise InputError(f"mirror lab: name {name!r} is not 1-12 characters of [a-z0-9]")
        if shared := sorted(set(tasks) & set(clients)):
            raise InputError(f"mirror lab: {', '.join(shared)} named both a task and a client")
        self.prefix = prefix
        self.tasks = {name: ipaddress.IPv4Interface(address) for name, address in tasks.items()}
        self.clients = {name: ipaddress.IPv4Interface(address) for name, address in clients.items()}
        self.collector = ipaddress.IPv4Interface(collector_address)
        free = (host for host in self.collector.network.hosts() if host != self.collector.ip)
        self.underlay = {
            name: ipaddress.IPv4Interface(f"{host}/{self.collector.network.prefixlen}")
            for name, host in zip(tasks, free, strict=False)
        }
        if len(self.underlay) < len(self.tasks):
            raise InputError(f"mirror lab: {self.collector.network} has no room for {len(tasks)} tasks")
        self.workdir: Path | None = None
        self._undo: list[Callable[[], None]] = []  # how to take back each thing made, oldest first
        self._mirrors: dict[str, int] = {}
        self._clients: list[TrafficClient] = []
        self._lock = threading.Lock()

    # ---- names

    @property
    def fabric_namespace(self) -> str:
        return f"{self.prefix}-fabric"

    @property
    def collector_namespace(self) -> str:
        return f"{self.prefix}-collector"

    def task_namespace(self, task: str) -> str:
        self._known(task, self.tasks)
        return f"{self.prefix}-task-{task}"

    def client_namespace(self, client: str) -> str:
        self._known(client, self.clients)
        return f"{self.prefix}-client-{client}"

    def task_ip(self, task: str) -> str:
        self._known(task, self.tasks)
        return str(self.tasks[task].ip)

    @property
    def collector_ip(self) -> str:
        return str(self.collector.ip)

    @staticmethod
    def _known(name: str, names: Mapping[str, object]) -> None:
        if name not in names:
            raise InputError(f"mirror lab: no task or client named {name!r}")

    def _namespaces(self) -> list[str]:
        return [
            self.fabric_namespace,
            self.collector_namespace,
            *(self.task_namespace(task) for task in self.tasks),
            *(self.client_namespace(client) for client in self.clients),
        ]

    # ---- lifecycle

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.down()

    def up(self) -> None:
        _require(("ip", "tc", "bridge", "ethtool", "sysctl"))
        for namespace in lab_namespaces(self.prefix):  # left behind by an earlier run killed outright
            delete_namespace(namespace)
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def _build(self) -> None:
        for namespace in self._namespaces():
            _run(["ip", "netns", "add", namespace])
            self._undo.append(functools.partial(delete_namespace, namespace))
            # No IPv6 autoconfiguration chatter (RS/MLD): a VPC delivers only the workload's own packets.
            _run(
                ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
                namespace,
            )
            _batch("ip", namespace, ["link set lo up"])

        # Without snooping the bridges send no IGMP reports of their own (for 224.0.0.106), which would
        # otherwise reach every ENI and its mirror; a VPC delivers nothing of the kind.
        bridges = ["svc", "under"]
        _batch(
            "ip",
            self.fabric_namespace,
            [f"link add {bridge} type bridge mcast_snooping 0" for bridge in bridges]
            + [f"link set {bridge} up" for bridge in bridges],
        )
        macs = {
            name: f"02:6c:61:62:{index >> 8:02x}:{index & 0xFF:02x}"
            for index, name in enumerate([*self.tasks, *self.clients], 1)
        }
        subnet_ports = {}
        for index, (task, address) in enumerate(self.tasks.items()):
            namespace = self.task_namespace(task)
            subnet_ports[f"t{index}"] = macs[task]
            self._veth(f"t{index}", "svc", namespace, "eth0", address, macs[task])
            self._veth(f"u{index}", "under", namespace, "ul0", self.underlay[task])
        for index, (client, address) in enumerate(self.clients.items()):
            subnet_ports[f"c{index}"] = macs[client]
            self._veth(f"c{index}", "svc", self.client_namespace(client), "eth0", address, macs[client])
        self._veth("col", "under", self.collector_namespace, "eth0", self.collector)

        # A VPC delivers to an ENI only what is addressed to it. A learning bridge floods frames for a MAC
        # it has not seen yet to every port, and tc on the other ENIs would mirror them: so every port
        # gets its MAC as a static entry and no flooding.
        _batch(
            "ip",
            self.fabric_namespace,
            [f"link set dev {port} type bridge_slave learning off flood off" for port in subnet_ports],
        )
        _batch(
            "bridge",
            self.fabric_namespace,
            [f"fdb replace {mac} dev {port} master static" for port, mac in subnet_ports.items()],
        )

        # Static neighbours keep ARP out of the mirror, as in a VPC, whose fabric answers ARP itself.
        members = {**self.tasks, **self.clients}
        for name in members:
            namespace = self.task_namespace(name) if name in self.tasks else self.client_namespace(name)
            peers = self.tasks if name in self.clients else members
            _batch(
                "ip",
                namespace,
                [
                    f"neigh replace {address.ip} lladdr {macs[peer]} dev eth0 nud permanent"
                    for peer, address in peers.items()
                    if peer != name
                ],
            )

    def _veth(
        self,
        port: str,
        bridge: str,
        namespace: str,
        device: str,
        address: ipaddress.IPv4Interface,
        mac: str = "",
    ) -> None:
        """A veth from a bridge in the fabric namespace to `device` in `namespace`, addressed and up."""
        fabric = self.fabric_namespace
        mtu = f"mtu {UNDERLAY_MTU}" if bridge == "under" else ""
        peer_options = f"{mtu} address {mac}" if mac else mtu
        _batch(
            "ip",
            fabric,
            [
                f"link add name {port} {mtu} type veth peer name {device} netns {namespace} {peer_options}",
                f"link set {port} master {bridge} up",
            ],
        )
        _run(["ethtool", "-K", port, *NO_OFFLOADS], fabric)
        _run(["ethtool", "-K", device, *NO_OFFLOADS], namespace)
        _batch("ip", namespace, [f"addr add {address} dev {device}", f"link set {device} up"])

    def down(self) -> None:
        """Undoes everything up() and the starters did, newest first; safe to call again."""
        with self._lock:
            self._mirrors.clear()
        while self._undo:
            undo = self._undo.pop()
            with contextlib.suppress(Exception):  # one failed step must not leave the rest behind
                undo()
        self._clients.clear()
        self.workdir = None

    # ---- mirroring

    @property
    def mirrors(self) -> dict[str, int]:
        """The tasks being mirrored and their VNIs."""
        with self._lock:
            return dict(self._mirrors)

    def install_mirror(self, task: str, vni: int) -> None:
        """Copies both directions of the task's ENI to the collector as VXLAN on UDP 4789 with this VNI."""
        namespace = self.task_namespace(task)
        if not 0 <= vni < 1 << 24:
            raise InputError(f"mirror lab: VNI {vni} is not 24 bits")
        with self._lock:
            if self._mirrors.get(task) == vni:
                return
            if task in self._mirrors:
                self._remove_mirror(task)
            vxlan = (
                f"link add {MIRROR_DEVICE} type vxlan id {vni} remote {self.collector.ip} "
                f"local {self.underlay[task].ip} dstport {VXLAN_PORT} dev ul0"
            )
            self._mirrors[task] = vni
            try:
                _batch(
                    "ip",
                    namespace,
                    [vxlan, f"link set {MIRROR_DEVICE} mtu {UNDERLAY_MTU - VXLAN_OVERHEAD} up"],
                )
                # matchall is not available everywhere; a u32 rule matching every frame does the same.
                mirror_all = f"protocol all u32 match u32 0 0 action mirred egress mirror dev {MIRROR_DEVICE}"
                _batch(
                    "tc",
                    namespace,
                    [
                        "qdisc add dev eth0 clsact",
                        f"filter add dev eth0 ingress {mirror_all}",
                        f"filter add dev eth0 egress {mirror_all}",
                    ],
                )
            except InputError:
                with contextlib.suppress(InputError):  # undo what was made; the first error is the one to see
                    self._remove_mirror(task)
                raise

    def remove_mirror(self, task: str) -> None:
        """Stops mirroring the task: its filters and VXLAN device are gone. Nothing to do if not mirrored."""
        self._known(task, self.tasks)
        with self._lock:
            if task in self._mirrors:
                self._remove_mirror(task)

    def _remove_mirror(self, task: str) -> None:
        namespace = self.task_namespace(task)
        del self._mirrors[task]
        # Deleting the clsact qdisc deletes its ingress and egress filters with it.
        with contextlib.suppress(InputError):  # absent when installing failed before adding it
            _batch("tc", namespace, ["qdisc del dev eth0 clsact"])
        _batch("ip", namespace, [f"link del {MIRROR_DEVICE}"])

    # ---- servers

    def _lab_path(self, name: str) -> Path:
        """A path in the lab's temporary directory, which is made on first use and removed by down()."""
        if self.workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-lab-"))
            self._undo.append(functools.partial(shutil.rmtree, workdir, ignore_errors=True))
            workdir.chmod(0o755)  # postgres and redis run as their own users and must reach their directories
            self.workdir = workdir
        return self.workdir / name

    def _write_private(self, name: str, data: bytes) -> Path:
        path = self._lab_path(name)
        path.touch(0o600)
        path.write_bytes(data)
        return path

    def _serve_http(self, task: str, port: int, tls: ssl.SSLContext | None, description: str) -> Peer:
        host = self.task_ip(task)
        try:
            server = _in_namespace(self.task_namespace(task), lambda: _HttpServer((host, port), tls))
        except OSError as exc:
            raise InputError(f"mirror lab: {description} on {host}:{port}: {exc.strerror}") from exc
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=description, daemon=True
        )
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(COMMAND_TIMEOUT_S)

        return self._started(Peer(f"{description} on {host}:{port}", stop))

    def _started(self, peer: Peer) -> Peer:
        self._undo.append(peer.stop)
        return peer

    def start_tls_server(
        self, task: str, port: int, cert_pem: bytes, key_pem: bytes, chain_pem: bytes = b""
    ) -> Peer:
        """A TLS 1.3-only HTTPS server sending cert_pem then chain_pem (intermediates); answers any GET."""
        name = f"tls-{task}-{port}"
        chain = self._write_private(f"{name}.pem", cert_pem + chain_pem)
        key = self._write_private(f"{name}.key", key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        try:
            context.load_cert_chain(chain, key)
        except ssl.SSLError as exc:
            raise InputError(f"mirror lab: certificate or key for {name} unusable: {exc}") from exc
        context.set_alpn_protocols(["http/1.1"])
        return self._serve_http(task, port, context, "TLS 1.3 server")

    def start_http_server(self, task: str, port: int = 80) -> Peer:
        """A plaintext HTTP server; answers any GET."""
        return self._serve_http(task, port, None, "HTTP server")

    def start_postgres(
        self, task: str, cert_pem: bytes, key_pem: bytes, chain_pem: bytes = b"", port: int = 5432
    ) -> Peer:
        """PostgreSQL with ssl=on (clients choose), trust auth for the task's subnet, listening on its IP;
        it sends cert_pem then chain_pem (intermediates) in its handshake."""
        _require(("runuser",))
        bindir = _postgres_bindir()
        namespace, host = self.task_namespace(task), self.task_ip(task)
        pg_dir = self._lab_path(f"pg-{task}-{port}")
        pg_dir.mkdir()
        (pg_dir / "server.crt").write_bytes(cert_pem + chain_pem)
        (pg_dir / "server.key").touch(0o600)  # postgres refuses a key others can read
        (pg_dir / "server.key").write_bytes(key_pem)
        for path in (pg_dir, *pg_dir.iterdir()):
            shutil.chown(path, "postgres", "postgres")
        data = pg_dir / "data"

        def as_postgres(tool: str, *args: str) -> list[str]:  # the server tools refuse to run as root
            return ["runuser", "-u", "postgres", "--", str(bindir / tool), "-D", str(data), *args]

        _run(as_postgres("initdb", "-U", "postgres", "-A", "trust", "--no-sync"))
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.tasks[task].network} trust\n")  # both hostssl and hostnossl
        options = (
            f"-c listen_addresses={host} -c port={port} -c unix_socket_directories={pg_dir} -c ssl=on "
            f"-c ssl_cert_file={pg_dir / 'server.crt'} -c ssl_key_file={pg_dir / 'server.key'}"
        )
        log = str(pg_dir / "log")
        start = as_postgres("pg_ctl", "-l", log, "-o", options, "-w", "-t", str(READY_TIMEOUT_S), "start")

        def stop() -> None:
            with contextlib.suppress(InputError):
                _run(as_postgres("pg_ctl", "-m", "fast", "-w", "-t", str(READY_TIMEOUT_S), "stop"))

        # Recorded before starting: a server that started but missed the deadline is stopped all the same.
        peer = self._started(Peer(f"PostgreSQL on {host}:{port}", stop))
        _run(start, namespace)
        return peer

    def start_redis(self, task: str, port: int = 6379) -> Peer:
        """redis-server in plaintext on the task's IP, without persistence."""
        _require(("redis-server", "redis-cli", "runuser"))
        namespace, host = self.task_namespace(task), self.task_ip(task)
        redis_dir = self._lab_path(f"redis-{task}-{port}")
        redis_dir.mkdir()
        shutil.chown(redis_dir, "redis", "redis")
        # Protected mode would refuse every client not on loopback, as none sends a password.
        server = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(redis_dir),
        ]
        process = subprocess.Popen(
            ["ip", "netns", "exec", namespace, "runuser", "-u", "redis", "--", *server],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            process.terminate()
            try:
                process.wait(COMMAND_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(COMMAND_TIMEOUT_S)

        peer = self._started(Peer(f"Redis on {host}:{port}", stop))
        # Probed from inside the task namespace: that goes over lo, never through the ENI and its mirror.
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(InputError):
                if _run(["redis-cli", "-h", host, "-p", str(port), "ping"], namespace).strip() == "PONG":
                    return peer
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise InputError(f"mirror lab: redis-server on {host}:{port} did not come up")

    # ---- clients

    def _client(
        self, description: str, one_round: Callable[[], None], count: int, pause: float
    ) -> TrafficClient:
        client = TrafficClient(description, one_round, count, pause)
        self._clients.append(client)
        self._undo.append(client.stop)
        if count > 0:
            client.start()
        return client

    def run_clients_once(self) -> None:
        """One more round of every client started so far, one after the other; raises on the first failure."""
        for client in list(self._clients):
            client.run_once()

    def start_tls_client(
        self,
        client: str,
        host: str,
        port: int,
        keylog_path: Path,
        *,
        server_name: str | None = None,
        count: int = 1,
        pause: float = 1.0,
    ) -> TrafficClient:
        """HTTPS GETs that log their TLS secrets to keylog_path (SSLKEYLOGFILE format). The server's
        certificate is not checked: judging the chain is the verifier's job, not the client's."""
        namespace = self.client_namespace(client)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.keylog_filename = str(keylog_path)
        context.set_alpn_protocols(["http/1.1"])

        def one_round() -> None:
            with context.wrap_socket(
                _tcp_connection(namespace, host, port), server_hostname=server_name
            ) as tls:
                _http_get(tls, server_name or host)

        return self._client(f"TLS client {client} -> {host}:{port}", one_round, count, pause)

    def start_http_client(
        self, client: str, host: str, port: int = 80, *, count: int = 1, pause: float = 1.0
    ) -> TrafficClient:
        """Plaintext HTTP GETs."""
        namespace = self.client_namespace(client)

        def one_round() -> None:
            with _tcp_connection(namespace, host, port) as connection:
                _http_get(connection, host)

        return self._client(f"HTTP client {client} -> {host}:{port}", one_round, count, pause)

    def start_psql_client(
        self,
        client: str,
        host: str,
        port: int = 5432,
        *,
        sslmode: str,
        count: int = 1,
        pause: float = 1.0,
    ) -> TrafficClient:
        """psql sessions with sslmode "disable" or "require"; each checks the server saw what it asked for."""
        _require(("psql",))
        namespace = self.client_namespace(client)
        expected = {"disable": "f", "require": "t"}.get(sslmode)
        if expected is None:
            raise InputError(f"mirror lab: sslmode {sslmode!r} is neither disable nor require")
        conninfo = (
            f"host={host} port={port} user=postgres dbname=postgres sslmode={sslmode} gssencmode=disable "
            f"connect_timeout={CLIENT_TIMEOUT_S}"
        )
        query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"

        def one_round() -> None:
            answer = _run(
                ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", conninfo, "-c", query], namespace
            )
            if answer.strip() != expected:
                raise OSError(f"sslmode={sslmode} but the server reports ssl={answer.strip()!r}")

        return self._client(f"psql sslmode={sslmode} {client} -> {host}:{port}", one_round, count, pause)

    def start_redis_client(
        self, client: str, host: str, port: int = 6379, *, count: int = 1, pause: float = 1.0
    ) -> TrafficClient:
        """redis-cli PING, SET and GET over one connection."""
        _require(("redis-cli",))
        namespace = self.client_namespace(client)

        def one_round() -> None:
            commands = "PING\nSET lab:greeting hello\nGET lab:greeting\n"
            answer = _run(["redis-cli", "-h", host, "-p", str(port)], namespace, stdin=commands)
            if answer.split() != ["PONG", "OK", "hello"]:
                raise OSError(f"unexpected answer {answer!r}")

        return self._client(f"redis-cli {client} -> {host}:{port}", one_round, count, pause)


def _http_get(connection: socket.socket, host: str) -> None:
    connection.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    # Bounded: the server closes after one response, and every read has the connection's timeout.
    while len(answer) < 65536 and (chunk := connection.recv(4096)):
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected HTTP answer {answer[:40]!r}")
