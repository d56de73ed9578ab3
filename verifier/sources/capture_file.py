"""Read pcap and pcapng capture files, streaming, and hand their raw link-layer frames to the core.

Formats: classic pcap (libpcap's savefile format, draft-ietf-opsawg-pcap) and pcapng
(draft-ietf-opsawg-pcapng), either of them optionally gzip-compressed. The format is chosen by magic bytes,
never by the file name.

Speed matters here: the whole analysis of a million-packet capture runs in one Python process, so the file
is read in large chunks and records are cut out of a buffer with ``struct.unpack_from``; per record the work
is one unpack, a bounds check, one slice and one tuple. Memory is bounded by the chunk size and the largest
block, whatever the file size.
"""

from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NamedTuple

from verifier.core.decode import LINKTYPE_RAW
from verifier.errors import CaptureFormatError, InputError

# Some writers stored the platform's DLT_RAW value (12, or 14 on OpenBSD) instead of LINKTYPE_RAW; libpcap and
# Wireshark read both as raw IP.
_LINKTYPE_ALIASES = {12: LINKTYPE_RAW, 14: LINKTYPE_RAW}
# The pcap header's link-type field carries FCS flags in its upper bits (libpcap's LT_LINKTYPE mask).
_LINKTYPE_MASK = 0x03FFFFFF

# Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD: a record claiming more is corruption, not a packet.
MAX_CAPLEN = 256 * 1024
# Writers sometimes store a little more than their snaplen; only a record beyond snaplen + 64 KiB is absurd.
_SNAPLEN_SLACK = 65535
# Largest pcapng block of any type buffered whole (name tables and key logs can exceed one packet).
_MAX_BLOCK_LEN = 16 * 1024 * 1024
# Measured on the 1M-packet benchmark: 256 KiB beats 1 MiB by a third (the buffer stays in L2 cache).
_CHUNK = 256 * 1024

_GZIP_MAGIC = b"\x1f\x8b"
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BYTE_ORDER = {b"\x1a\x2b\x3c\x4d": ">", b"\x4d\x3c\x2b\x1a": "<"}
# magic as stored -> (byte order, fraction units per second, record header length)
_PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000, 16),
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000, 16),
    # Kuznetzov's patched tcpdump: 8 more bytes per record (ifindex, protocol, packet type, padding).
    b"\xa1\xb2\xcd\x34": (">", 1_000_000, 24),
    b"\x34\xcd\xb2\xa1": ("<", 1_000_000, 24),
}
_ACCEPTED = (
    "accepted: pcap (magic a1b2c3d4, a1b23c4d or a1b2cd34, either byte order) "
    "and pcapng (0a0d0d0a), optionally gzip-compressed"
)

_BT_SHB = 0x0A0D0D0A
_BT_IDB = 1
_BT_PB = 2
_BT_SPB = 3
_BT_EPB = 6
_BT_DSB = 0x0000000A
_SECRETS_TLS_KEY_LOG = 0x544C534B
_OPT_END = 0
_OPT_IF_NAME = 2
_OPT_IF_TSRESOL = 9
_OPT_IF_TSOFFSET = 14


@dataclass(frozen=True, slots=True)
class Interface:
    """A capture interface: one per pcap file, one per pcapng Interface Description Block."""

    linktype: int
    snaplen: int
    name: str | None
    ts_resolution: float  # seconds per timestamp tick


class _SectionInterface(NamedTuple):  # a tuple: the packet loop unpacks it in one step
    linktype: int
    ticks_per_second: int  # an int so that ticks / ticks_per_second is correctly rounded
    ts_offset: int
    max_caplen: int
    snaplen: int


# (timestamp in seconds since the epoch, link type, captured bytes, original length); close() to stop early
_FrameGenerator = Generator[tuple[float, int, bytes, int], None, None]


class CaptureTruncatedError(CaptureFormatError):
    """The file ends inside a record: every frame before it was read; the caller decides whether to go on."""


class _BackgroundSha256:
    """SHA-256 computed on a helper thread, fed the chunks in file order.

    hashlib releases the GIL while it hashes, so with a second core free the file's hash (a third of the
    reader's time when done inline) costs the parsing thread only a queue handoff per chunk.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)  # bounds the chunks held in memory
        # Not "_thread": mypyc would name its C field __thread, a C keyword.
        self._worker = threading.Thread(target=self._run, name="capture-sha256", daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def close(self) -> None:
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


def _max_caplen(snaplen: int) -> int:
    return MAX_CAPLEN if snaplen == 0 else min(MAX_CAPLEN, snaplen + _SNAPLEN_SLACK)


class CaptureReader:
    """Iterate the frames of one capture file. Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.compressed = False
        self.format = ""
        self._interfaces: list[Interface] = []
        self._tls_secrets: list[bytes] = []
        self._raw_done = False
        # frames(): "new" (not called), "running" (its generator is live), "done" (it ended or was closed).
        self._frames_state = "new"
        # The generator frames() returned, held until it ends or is closed: one the caller merely drops is
        # finalized at once by CPython but never by compiled (mypyc) code, so neither may count on that.
        self._frames: _FrameGenerator | None = None
        try:
            self._file: BinaryIO = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by __exit__
            self._size = os.fstat(self._file.fileno()).st_size
        except OSError as exc:
            raise InputError(f"{path}: cannot open capture: {exc.strerror or exc}") from exc
        self._hash = _BackgroundSha256()
        try:
            self._chunks, self._head = self._detect()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()  # explicitly: the same in both builds (see _frames)
            self._frames = None
        self._hash.close()
        self._file.close()

    @property
    def interfaces(self) -> list[Interface]:
        return list(self._interfaces)

    @property
    def bytes_read(self) -> int:
        """Bytes of the file as stored read so far, to compare with ``size`` for progress (gzip too)."""
        return self._size if self._file.closed else self._file.tell()

    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        """SHA-256 of the file as stored, hashed while reading; any part frames() left unread is read now.

        Once frames() has started, it must first be exhausted or closed (its ``close()``).
        """
        if not self._raw_done:
            if self._frames_state == "running":
                raise RuntimeError("sha256 is known once frames() has been exhausted or closed")
            if self._file.closed:
                raise RuntimeError("sha256 is unknown: the capture was closed before it was read to the end")
            self._frames_state = "done"
            for _ in self._raw_chunks():
                pass
        return self._hash.hexdigest()

    @property
    def tls_key_log(self) -> bytes:
        return b"".join(self._tls_secrets)

    def frames(self) -> _FrameGenerator:
        """Yield (timestamp in seconds since the epoch, link type, captured bytes, original length)."""
        if self._frames_state != "new":
            raise RuntimeError("frames() reads the file as a stream: it can be called once, before sha256")
        self._frames_state = "running"
        self._frames = self._pcap_frames() if self.format == "pcap" else self._pcapng_frames()
        return self._frames

    # Stream plumbing -------------------------------------------------------------------------------------

    # In a gzip file, offsets count bytes of the decompressed content; the messages say so.

    def _error(self, message: str, offset: int | None) -> CaptureFormatError:
        if self.compressed and offset is not None:
            message = f"gzip-decompressed content: {message}"
        return CaptureFormatError(str(self.path), message, offset)

    def _truncated(self, message: str, offset: int) -> CaptureTruncatedError:
        where = " (gzip-decompressed content)" if self.compressed else ""
        return CaptureTruncatedError(str(self.path), f"truncated capture{where}: {message}", offset)

    def _raw_chunks(self) -> Iterator[bytes]:
        read = self._file.read
        update = self._hash.update
        while True:
            try:
                chunk = read(_CHUNK)
            except OSError as exc:
                raise InputError(f"{self.path}: cannot read capture: {exc.strerror or exc}") from exc
            if not chunk:
                self._raw_done = True
                return
            update(chunk)
            yield chunk

    def _gunzip(self, raw: Iterator[bytes]) -> Iterator[bytes]:
        """Decompress gzip members one after another (RFC 1952 allows several), at most a chunk at a time."""
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        member_started = False
        try:
            for data in raw:
                while data:
                    member_started = True
                    # Bounded output: a small compressed chunk may expand a thousandfold.
                    out = decompressor.decompress(data, _CHUNK)
                    if out:
                        yield out
                    if decompressor.eof:
                        data = decompressor.unused_data
                        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                        member_started = False
                    else:
                        data = decompressor.unconsumed_tail
            if member_started:
                out = decompressor.flush()
                if out:
                    yield out
                if not decompressor.eof:
                    raise CaptureTruncatedError(
                        str(self.path), "truncated capture: the file ends inside its gzip stream", self._size
                    )
        except zlib.error as exc:
            raise self._error(f"corrupt gzip stream ({exc})", None) from exc

    def _detect(self) -> tuple[Iterator[bytes], bytes]:
        """Choose gzip and the capture format by magic bytes; return the stream and its first bytes."""
        raw = self._raw_chunks()
        first = b""
        for chunk in raw:
            first += chunk
            if len(first) >= len(_GZIP_MAGIC):
                break
        if not first:
            raise self._error("empty file, not a capture", None)
        if first.startswith(_GZIP_MAGIC):
            self.compressed = True
            chunks = self._gunzip(_prepend(first, raw))
        else:
            chunks = _prepend(first, raw)
        head = b""
        for chunk in chunks:
            head += chunk
            if len(head) >= 24:
                break
        if not head:
            raise self._error("empty gzip stream, not a capture", None)
        magic = head[:4]
        if magic == _PCAPNG_MAGIC:
            self.format = "pcapng"
        elif magic in _PCAP_MAGICS:
            self.format = "pcap"
        else:
            raise self._error(f"not a capture file (it starts with {head[:8].hex()}); {_ACCEPTED}", 0)
        return chunks, head

    # pcap ------------------------------------------------------------------------------------------------

    def _pcap_frames(self) -> _FrameGenerator:
        try:
            chunks, buf = self._chunks, self._head
            order, per_second, record_header_len = _PCAP_MAGICS[buf[:4]]
            if len(buf) < 24:
                raise self._truncated("the file ends inside the 24-byte pcap file header", 0)
            # File header: magic, version major/minor (u16 each), thiszone, sigfigs, snaplen, link type.
            # thiszone is 0 in practice and libpcap ignores it, as does this reader.
            major, minor, _thiszone, _sigfigs, snaplen, linktype = struct.unpack_from(
                order + "HHiIII", buf, 4
            )
            if major != 2:
                raise self._error(f"unsupported pcap version {major}.{minor} (expected 2.x)", 4)
            linktype &= _LINKTYPE_MASK
            linktype = _LINKTYPE_ALIASES.get(linktype, linktype)
            tick = 1 / per_second
            self._interfaces.append(Interface(linktype, snaplen, None, tick))
            max_caplen = _max_caplen(snaplen)
            # Record header: ts seconds, ts fraction (us or ns), captured length, original length. One unpack,
            # not byte-by-byte reads: those saved the compiled build 3% of its instructions but cost the pure
            # one 14% (callgrind, 100k-packet bench).
            unpack = struct.Struct(order + "IIII").unpack_from
            # Typed, because unpack_from's tuple is not: compiled (mypyc), the arithmetic on them is native.
            seconds: int
            fraction: int
            caplen: int
            orig_len: int
            base = 0  # stream offset of buf[0]
            pos = 24
            end_buf = len(buf)
            while True:
                try:
                    seconds, fraction, caplen, orig_len = unpack(buf, pos)
                except struct.error:  # fewer than 16 bytes left in the buffer
                    more = next(chunks, None)
                    if more is None:
                        if pos == end_buf:
                            return
                        raise self._truncated("the file ends inside a record header", base + pos) from None
                    base += pos
                    buf = buf[pos:] + more
                    pos = 0
                    end_buf = len(buf)
                    continue
                start = pos + record_header_len
                end = start + caplen
                if end > end_buf or caplen > max_caplen:
                    if caplen > max_caplen:
                        raise self._error(
                            f"record claims {caplen} captured bytes, more than the {max_caplen} possible"
                            f" with snaplen {snaplen}: corrupt file",
                            base + pos,
                        )
                    more = next(chunks, None)
                    if more is None:
                        raise self._truncated(
                            f"the file ends inside a {caplen}-byte packet record", base + pos
                        )
                    base += pos
                    buf = buf[pos:] + more
                    pos = 0
                    end_buf = len(buf)
                    continue
                yield seconds + fraction * tick, linktype, buf[start:end], orig_len
                pos = end
        finally:
            self._frames_state = "done"

    # pcapng ----------------------------------------------------------------------------------------------

    def _pcapng_frames(self) -> _FrameGenerator:
        try:
            chunks, buf = self._chunks, self._head
            base = 0  # stream offset of buf[0]
            pos = 0
            end_buf = len(buf)
            order = "<"  # replaced by the first Section Header Block
            block_header = struct.Struct(order + "II").unpack_from
            u32 = struct.Struct(order + "I").unpack_from
            epb = struct.Struct(order + "IIIII").unpack_from
            section: list[_SectionInterface] = []
            last_ts = 0.0
            # Typed, because the unpacked tuples are not: compiled (mypyc), the arithmetic on them is native.
            # Not the timestamp halves: native int / int goes through doubles, which rounds a nanosecond
            # count (beyond 2**53) before dividing; Python's division is exact, and so must the build's be.
            block_type: int
            block_len: int
            interface_id: int
            caplen: int
            orig_len: int
            while True:
                # 12 bytes: a block's type and length, and an SHB's byte-order magic after them.
                if pos + 12 > end_buf:
                    more = next(chunks, None)
                    if more is None:
                        if pos == end_buf:
                            return
                        raise self._truncated("the file ends inside a pcapng block header", base + pos)
                    base += pos
                    buf = buf[pos:] + more
                    pos = 0
                    end_buf = len(buf)
                    continue
                block_type, block_len = block_header(buf, pos)
                if block_type == _BT_SHB:
                    # The section's byte order is known only from this magic; the length comes before it.
                    order_mark = buf[pos + 8 : pos + 12]
                    if order_mark not in _PCAPNG_BYTE_ORDER:
                        raise self._error("section header's byte-order magic is not 1a2b3c4d", base + pos + 8)
                    order = _PCAPNG_BYTE_ORDER[order_mark]
                    block_header = struct.Struct(order + "II").unpack_from
                    u32 = struct.Struct(order + "I").unpack_from
                    epb = struct.Struct(order + "IIIII").unpack_from
                    block_len = u32(buf, pos + 4)[0]
                if block_len < 12 or block_len & 3 or block_len > _MAX_BLOCK_LEN:
                    raise self._error(
                        f"pcapng block of type {block_type:#x} has impossible length {block_len}"
                        f" (must be a multiple of 4, from 12 to {_MAX_BLOCK_LEN})",
                        base + pos,
                    )
                end = pos + block_len
                if end > end_buf:
                    more = next(chunks, None)
                    if more is None:
                        raise self._truncated(
                            f"the file ends inside a {block_len}-byte pcapng block of type {block_type:#x}",
                            base + pos,
                        )
                    base += pos
                    buf = buf[pos:] + more
                    pos = 0
                    end_buf = len(buf)
                    continue
                if u32(buf, end - 4)[0] != block_len:
                    raise self._error(
                        f"pcapng block of type {block_type:#x}: trailing length {u32(buf, end - 4)[0]}"
                        f" differs from leading length {block_len}",
                        base + end - 4,
                    )
                if block_type == _BT_EPB:
                    if block_len < 32:
                        raise self._error(
                            f"enhanced packet block of {block_len} bytes is too short", base + pos
                        )
                    # Interface id, timestamp high and low 32 bits, captured length, original length.
                    interface_id, ts_high, ts_low, caplen, orig_len = epb(buf, pos + 8)
                    if caplen > block_len - 32:
                        raise self._error(
                            f"enhanced packet block claims {caplen} captured bytes in {block_len} bytes",
                            base + pos,
                        )
                    if interface_id >= len(section):
                        raise self._unknown_interface(interface_id, section, base + pos)
                    linktype, ticks_per_second, ts_offset, max_caplen, _snaplen = section[interface_id]
                    if caplen > max_caplen:
                        raise self._absurd_caplen(caplen, section[interface_id], base + pos)
                    last_ts = ((ts_high << 32) | ts_low) / ticks_per_second + ts_offset
                    yield last_ts, linktype, buf[pos + 28 : pos + 28 + caplen], orig_len
                elif block_type == _BT_SHB:
                    if block_len < 28:
                        raise self._error(
                            f"section header block of {block_len} bytes is too short", base + pos
                        )
                    # Byte-order magic, version major and minor (u16 each), section length (i64), options.
                    major, minor = struct.unpack_from(order + "HH", buf, pos + 12)
                    if major != 1:
                        raise self._error(
                            f"unsupported pcapng version {major}.{minor} (expected 1.x)", base + pos
                        )
                    section = []
                elif block_type == _BT_IDB:
                    section.append(self._read_idb(buf, pos, order, base))
                elif block_type == _BT_SPB:
                    # Original length only: the frame has the first interface and min(orig, snaplen) bytes.
                    if block_len < 16:
                        raise self._error(
                            f"simple packet block of {block_len} bytes is too short", base + pos
                        )
                    orig_len = u32(buf, pos + 8)[0]
                    if not section:
                        raise self._unknown_interface(0, section, base + pos)
                    interface = section[0]
                    caplen = orig_len if interface.snaplen == 0 else min(orig_len, interface.snaplen)
                    if caplen > interface.max_caplen:
                        raise self._absurd_caplen(caplen, interface, base + pos)
                    if caplen > block_len - 16:
                        raise self._error(
                            f"simple packet block holds fewer than its {caplen} captured bytes", base + pos
                        )
                    # No timestamp in an SPB: the last one seen is the best estimate.
                    yield last_ts, interface.linktype, buf[pos + 12 : pos + 12 + caplen], orig_len
                elif block_type == _BT_PB:
                    if block_len < 32:
                        raise self._error(f"packet block of {block_len} bytes is too short", base + pos)
                    # Interface id (u16), drops (u16), timestamp high and low, captured and original length.
                    interface_id, _drops, ts_high, ts_low, caplen, orig_len = struct.unpack_from(
                        order + "HHIIII", buf, pos + 8
                    )
                    if caplen > block_len - 32:
                        raise self._error(
                            f"packet block claims {caplen} captured bytes in a {block_len}-byte block",
                            base + pos,
                        )
                    if interface_id >= len(section):
                        raise self._unknown_interface(interface_id, section, base + pos)
                    interface = section[interface_id]
                    if caplen > interface.max_caplen:
                        raise self._absurd_caplen(caplen, interface, base + pos)
                    last_ts = ((ts_high << 32) | ts_low) / interface.ticks_per_second + interface.ts_offset
                    yield last_ts, interface.linktype, buf[pos + 28 : pos + 28 + caplen], orig_len
                elif block_type == _BT_DSB:
                    self._read_dsb(buf, pos, block_len, order, base)
                # Every other block (name resolution, statistics, custom, unknown) carries no frame.
                pos = end
        finally:
            self._frames_state = "done"

    def _unknown_interface(
        self, interface_id: int, section: list[_SectionInterface], offset: int
    ) -> CaptureFormatError:
        return self._error(
            f"packet refers to interface {interface_id} but its section describes {len(section)}", offset
        )

    def _absurd_caplen(self, caplen: int, interface: _SectionInterface, offset: int) -> CaptureFormatError:
        return self._error(
            f"packet claims {caplen} captured bytes, more than the {interface.max_caplen} possible"
            f" with snaplen {interface.snaplen}: corrupt file",
            offset,
        )

    def _read_idb(self, buf: bytes, pos: int, order: str, base: int) -> _SectionInterface:
        block_len = struct.unpack_from(order + "I", buf, pos + 4)[0]
        if block_len < 20:
            raise self._error(f"interface description block of {block_len} bytes is too short", base + pos)
        # Link type (u16), reserved (u16), snaplen (u32), then options up to the trailing length.
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
        linktype = _LINKTYPE_ALIASES.get(linktype, linktype)
        name: str | None = None
        ticks_per_second = 1_000_000  # default if_tsresol: microseconds
        ts_offset = 0
        option_pos = pos + 16
        options_end = pos + block_len - 4
        seen: set[int] = set()
        while option_pos + 4 <= options_end:
            code, length = struct.unpack_from(order + "HH", buf, option_pos)
            value_pos = option_pos + 4
            if value_pos + length > options_end:
                raise self._error(
                    f"interface option {code} runs past the end of its block", base + option_pos
                )
            if code == _OPT_END:
                break
            value = buf[value_pos : value_pos + length]
            # The spec leaves repeated options undefined; the first one wins, as in scapy and Wireshark.
            if code not in seen:
                seen.add(code)
                if code == _OPT_IF_NAME:
                    name = value.decode("utf-8", "replace")
                elif code == _OPT_IF_TSRESOL:
                    if length != 1:
                        raise self._error(
                            f"if_tsresol option of {length} bytes (must be 1)", base + option_pos
                        )
                    # High bit set: a negative power of 2, else a negative power of 10.
                    exponent = value[0] & 0x7F
                    ticks_per_second = 2**exponent if value[0] & 0x80 else 10**exponent
                elif code == _OPT_IF_TSOFFSET:
                    if length != 8:
                        raise self._error(
                            f"if_tsoffset option of {length} bytes (must be 8)", base + option_pos
                        )
                    ts_offset = struct.unpack_from(order + "q", value)[0]
            option_pos = value_pos + length + (-length % 4)
        self._interfaces.append(Interface(linktype, snaplen, name, 1 / ticks_per_second))
        return _SectionInterface(linktype, ticks_per_second, ts_offset, _max_caplen(snaplen), snaplen)

    def _read_dsb(self, buf: bytes, pos: int, block_len: int, order: str, base: int) -> None:
        if block_len < 20:
            raise self._error(f"decryption secrets block of {block_len} bytes is too short", base + pos)
        # Secrets type, secrets length, secrets (padded to 4 bytes), options.
        secrets_type, secrets_len = struct.unpack_from(order + "II", buf, pos + 8)
        if secrets_len > block_len - 20:
            raise self._error(
                f"decryption secrets block claims {secrets_len} bytes of secrets in a {block_len}-byte block",
                base + pos,
            )
        if secrets_type == _SECRETS_TLS_KEY_LOG:
            secrets = buf[pos + 16 : pos + 16 + secrets_len]
            # A key log is line based: keep the last line of one block apart from the first of the next.
            if secrets and not secrets.endswith(b"\n"):
                secrets += b"\n"
            self._tls_secrets.append(secrets)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def open_capture(path: Path) -> CaptureReader:
    """Open a pcap or pcapng file, gzip-compressed or not, choosing the format by its magic bytes."""
    return CaptureReader(path)
