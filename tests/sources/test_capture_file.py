"""Reading pcap and pcapng files: files built here field by field, the corpus against scapy, fuzzing."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier.core.decode import LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL, LINKTYPE_RAW
from verifier.errors import CaptureFormatError, InputError
from verifier.sources import capture_file
from verifier.sources.capture_file import (
    MAX_CAPLEN,
    CaptureTruncatedError,
    Interface,
    open_capture,
)

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"

Frame = tuple[float, int, bytes, int]

TS = 1_700_000_000  # a timestamp in seconds, late 2023
IP_PACKET = b"\x45" + bytes(19)  # an IPv4 header: version 4, header length 5 words, the rest zero
# Ethernet: broadcast destination, source, EtherType IPv4; then the IPv4 header.
ETH_FRAME = bytes.fromhex("ffffffffffff0200000000010800") + IP_PACKET


@pytest.fixture(autouse=True)
def no_hashing_thread_outlives_its_reader() -> Iterator[None]:
    yield
    assert not [thread for thread in threading.enumerate() if thread.name == "capture-sha256"]


# pcap ---------------------------------------------------------------------------------------------------


def pcap(
    records: list[tuple[int, int, bytes, int]],
    *,
    order: str = "<",
    magic: int = 0xA1B2C3D4,
    linktype: int = LINKTYPE_ETHERNET,
    snaplen: int = 65535,
) -> bytes:
    """A pcap file; records are (ts seconds, ts fraction, captured bytes, original length)."""
    # File header: magic (its stored byte order is the file's), version 2.4, thiszone, sigfigs, snaplen, link.
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for seconds, fraction, data, orig_len in records:
        # Record header: ts seconds, ts microseconds (nanoseconds with magic a1b23c4d), caplen, orig len.
        out += struct.pack(order + "IIII", seconds, fraction, len(data), orig_len)
        if magic == 0xA1B2CD34:
            # Kuznetzov's extra fields: ifindex, protocol, packet type, one byte of padding.
            out += struct.pack(order + "IHBx", 2, 0x0800, 0)
        out += data
    return out


def write(tmp_path: Path, content: bytes, name: str = "capture.pcap") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def read_all(path: Path) -> list[Frame]:
    with open_capture(path) as reader:
        return list(reader.frames())


def assert_frames(actual: list[Frame], expected: list[Frame]) -> None:
    assert [frame[1:] for frame in actual] == [frame[1:] for frame in expected]
    assert [frame[0] for frame in actual] == pytest.approx([frame[0] for frame in expected], abs=1e-6)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(("magic", "per_second"), [(0xA1B2C3D4, 10**6), (0xA1B23C4D, 10**9)])
def test_pcap_in_both_byte_orders_with_micro_and_nanoseconds(
    tmp_path: Path, order: str, magic: int, per_second: int
) -> None:
    content = pcap(
        [(TS, per_second // 4, ETH_FRAME, 60), (TS + 1, per_second - 1, ETH_FRAME[:14], 1514)],
        order=order,
        magic=magic,
    )
    path = write(tmp_path, content)
    with open_capture(path) as reader:
        frames = list(reader.frames())
        assert (reader.format, reader.compressed) == ("pcap", False)
        assert reader.interfaces == [Interface(LINKTYPE_ETHERNET, 65535, None, 1 / per_second)]
        assert reader.size == reader.bytes_read == len(content)
        assert reader.sha256 == hashlib.sha256(content).hexdigest()
        assert reader.tls_key_log == b""
    assert_frames(
        frames,
        [
            (TS + 0.25, LINKTYPE_ETHERNET, ETH_FRAME, 60),
            (TS + 1 + (per_second - 1) / per_second, LINKTYPE_ETHERNET, ETH_FRAME[:14], 1514),
        ],
    )


@pytest.mark.parametrize("order", ["<", ">"])
def test_modified_pcap_records_carry_eight_more_header_bytes(tmp_path: Path, order: str) -> None:
    path = write(
        tmp_path, pcap([(TS, 5, ETH_FRAME, 60), (TS, 6, b"\x01\x02", 2)], order=order, magic=0xA1B2CD34)
    )
    assert_frames(
        read_all(path),
        [(TS + 5e-6, LINKTYPE_ETHERNET, ETH_FRAME, 60), (TS + 6e-6, LINKTYPE_ETHERNET, b"\x01\x02", 2)],
    )


@pytest.mark.parametrize(
    ("stored", "meant"),
    [
        (12, LINKTYPE_RAW),  # DLT_RAW on most systems
        (14, LINKTYPE_RAW),  # DLT_RAW on OpenBSD
        (LINKTYPE_ETHERNET | 0x14000000, LINKTYPE_ETHERNET),  # FCS-length flags above the link type (4 bytes)
        (LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL),
    ],
)
def test_pcap_link_type_as_libpcap_reads_it(tmp_path: Path, stored: int, meant: int) -> None:
    path = write(tmp_path, pcap([(TS, 0, IP_PACKET, 20)], linktype=stored))
    assert read_all(path)[0][1] == meant


def test_frames_straddling_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Records of every length from 0 to 299 bytes, so that boundaries fall inside headers and bodies alike.
    records = [(TS + i, i, bytes([i % 256]) * (i % 300), 1500) for i in range(700)]
    expected = [
        (TS + i + i * 1e-6, LINKTYPE_ETHERNET, data, 1500) for i, (_, _, data, _) in enumerate(records)
    ]
    plain = write(tmp_path, pcap(records))
    compressed = write(tmp_path, gzip.compress(pcap(records)), "capture.pcap.gz")
    pcapng_content, pcapng_expected = two_section_pcapng()
    pcapng = write(tmp_path, pcapng_content, "capture.pcapng")
    assert_frames(read_all(plain), expected)  # the file is bigger than one chunk
    for chunk in (1, 7, 4096):
        monkeypatch.setattr(capture_file, "_CHUNK", chunk)  # stream pieces of this size, raw and decompressed
        assert_frames(read_all(plain), expected)
        assert_frames(read_all(compressed), expected)
        assert_frames(read_all(pcapng), pcapng_expected)


# pcapng -------------------------------------------------------------------------------------------------


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def block(order: str, block_type: int, body: bytes) -> bytes:
    """Block type, total length, body padded to 4 bytes, total length again."""
    length = 12 + len(pad(body))
    return struct.pack(order + "II", block_type, length) + pad(body) + struct.pack(order + "I", length)


def options(order: str, *items: tuple[int, bytes]) -> bytes:
    """Options (code, length, value padded to 4 bytes) closed by opt_endofopt."""
    encoded = b"".join(struct.pack(order + "HH", code, len(value)) + pad(value) for code, value in items)
    return encoded + struct.pack(order + "HH", 0, 0)


def shb(order: str) -> bytes:
    # Byte-order magic, version 1.0, section length -1 (not given).
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, snaplen: int = 0, *opts: tuple[int, bytes]) -> bytes:
    # Link type, reserved, snaplen, options.
    return block(
        order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + (options(order, *opts) if opts else b"")
    )


def epb(order: str, interface_id: int, ticks: int, data: bytes, orig_len: int = 0) -> bytes:
    # Interface id, timestamp high and low 32 bits, captured length, original length, data, epb_flags option.
    fixed = struct.pack(
        order + "IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig_len or len(data)
    )
    return block(order, 6, fixed + pad(data) + options(order, (2, struct.pack(order + "I", 1))))


def spb(order: str, orig_len: int, data: bytes) -> bytes:
    # Original length, data (captured length is min(original length, snaplen of interface 0)).
    return block(order, 3, struct.pack(order + "I", orig_len) + data)


def pb(order: str, interface_id: int, ticks: int, data: bytes) -> bytes:
    # Obsolete packet block: interface id (u16), drops (u16), timestamp high and low, caplen, orig len, data.
    fixed = struct.pack(
        order + "HHIIII", interface_id, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return block(order, 2, fixed + data)


def dsb(order: str, secrets_type: int, secrets: bytes) -> bytes:
    # Secrets type, secrets length, secrets.
    return block(order, 0x0A, struct.pack(order + "II", secrets_type, len(secrets)) + secrets)


IF_NAME, IF_TSRESOL, IF_TSOFFSET = 2, 9, 14
TLS_KEY_LOG = 0x544C534B
KEY_LINE = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"


def two_section_pcapng() -> tuple[bytes, list[Frame]]:
    """Section 1 little-endian with two interfaces; section 2 big-endian with its own interface 0."""
    le, be = "<", ">"
    content = b"".join(
        [
            shb(le),
            # Interface 0: Ethernet, named, nanosecond ticks. Interface 1: IPv4, 2^-20 s ticks, +10 s offset.
            idb(le, LINKTYPE_ETHERNET, 0, (IF_NAME, b"eth0"), (IF_TSRESOL, b"\x09")),
            idb(le, LINKTYPE_IPV4, 128, (IF_TSRESOL, b"\x94"), (IF_TSOFFSET, struct.pack(le + "q", 10))),
            epb(le, 0, TS * 10**9 + 500_000_000, ETH_FRAME, 1514),
            epb(le, 1, (TS << 20) + (1 << 18), IP_PACKET),  # a quarter second past TS, plus the offset
            block(le, 4, struct.pack(le + "HH", 0, 0)),  # name resolution block (empty): skipped
            dsb(le, TLS_KEY_LOG, KEY_LINE),
            block(le, 0x00000BAD, b"custom block"),  # skipped
            shb(be),
            idb(be, LINKTYPE_RAW, 64),  # default resolution: microseconds
            spb(be, 100, (IP_PACKET * 5)[:64]),  # 100 bytes on the wire, snaplen 64: 64 stored
            pb(be, 0, TS * 10**6 + 3, IP_PACKET),
            dsb(be, 0x57474B4C, b"wireguard keys"),  # another secrets type: not a TLS key log
            dsb(be, TLS_KEY_LOG, KEY_LINE.rstrip(b"\n")),  # key logs end in a newline; one is added
            block(be, 5, struct.pack(be + "III", 0, 0, 0)),  # interface statistics block: skipped
            epb(be, 0, TS * 10**6 + 4, IP_PACKET),
        ]
    )
    frames = [
        (TS + 0.5, LINKTYPE_ETHERNET, ETH_FRAME, 1514),
        (TS + 10.25, LINKTYPE_IPV4, IP_PACKET, 20),
        (TS + 10.25, LINKTYPE_RAW, (IP_PACKET * 5)[:64], 100),  # SPB: no timestamp, the last one seen is kept
        (TS + 3e-6, LINKTYPE_RAW, IP_PACKET, 20),
        (TS + 4e-6, LINKTYPE_RAW, IP_PACKET, 20),
    ]
    return content, frames


def test_pcapng_sections_interfaces_and_block_types(tmp_path: Path) -> None:
    content, expected = two_section_pcapng()
    path = write(tmp_path, content, "capture.pcapng")
    with open_capture(path) as reader:
        assert reader.interfaces == []  # discovered while reading
        frames = list(reader.frames())
        assert (reader.format, reader.compressed) == ("pcapng", False)
        assert reader.interfaces == [
            Interface(LINKTYPE_ETHERNET, 0, "eth0", 1e-9),
            Interface(LINKTYPE_IPV4, 128, None, 2**-20),
            Interface(LINKTYPE_RAW, 64, None, 1e-6),
        ]
        assert reader.tls_key_log == KEY_LINE * 2
        assert reader.bytes_read == len(content)
        assert reader.sha256 == hashlib.sha256(content).hexdigest()
    assert_frames(frames, expected)


def test_simple_packet_block_before_any_timestamp_gets_zero(tmp_path: Path) -> None:
    path = write(tmp_path, shb("<") + idb("<", LINKTYPE_RAW) + spb("<", 20, IP_PACKET))
    assert read_all(path) == [(0.0, LINKTYPE_RAW, IP_PACKET, 20)]


def test_pcapng_tsresol_power_of_ten_and_of_two(tmp_path: Path) -> None:
    content = shb(">") + b"".join(
        idb(">", LINKTYPE_ETHERNET, 0, (IF_TSRESOL, bytes([code]))) for code in (0x00, 0x03, 0x06, 0x80, 0x8A)
    )
    # Interfaces tick in seconds, milliseconds, microseconds, 2^0 s and 2^-10 s; 1.5 s after TS on each.
    ticks = [TS + 1, TS * 1000 + 1500, TS * 10**6 + 1_500_000, TS + 1, (TS << 10) + 1536]
    content += b"".join(epb(">", i, tick, IP_PACKET) for i, tick in enumerate(ticks))
    frames = read_all(write(tmp_path, content, "capture.pcapng"))
    assert [ts for ts, _, _, _ in frames] == pytest.approx(
        [TS + 1, TS + 1.5, TS + 1.5, TS + 1, TS + 1.5], abs=1e-9
    )


# format detection, compression, hashing -----------------------------------------------------------------


def test_format_is_chosen_by_magic_not_by_name(tmp_path: Path) -> None:
    pcapng_content, _ = two_section_pcapng()
    with open_capture(write(tmp_path, pcapng_content, "misnamed.pcap")) as reader:
        assert reader.format == "pcapng"
    with open_capture(write(tmp_path, pcap([(TS, 0, ETH_FRAME, 60)]), "misnamed.pcapng")) as reader:
        assert reader.format == "pcap"


@pytest.mark.parametrize("name", ["capture.pcap.gz", "capture-without-suffix"])
def test_gzip_is_read_transparently_and_hashed_as_stored(tmp_path: Path, name: str) -> None:
    content, expected = two_section_pcapng()
    # Two gzip members one after another: RFC 1952 allows it and gzip(1) reads it as one stream.
    compressed = gzip.compress(content[:100]) + gzip.compress(content[100:])
    path = write(tmp_path, compressed, name)
    with open_capture(path) as reader:
        assert_frames(list(reader.frames()), expected)
        assert (reader.format, reader.compressed) == ("pcapng", True)
        assert reader.size == reader.bytes_read == len(compressed)  # progress counts bytes as stored
        assert reader.sha256 == hashlib.sha256(compressed).hexdigest()


def test_sha256_is_complete_even_when_frames_stop_early(tmp_path: Path) -> None:
    content = pcap([(TS, 0, bytes(1000), 1000)] * 1000)  # bigger than one chunk
    path = write(tmp_path, content)
    with open_capture(path) as reader:
        for _ in reader.frames():
            break  # as a caller that needs only the first frames would, dropping the generator
        # Still live: the reader holds it, so that pure and compiled (mypyc) code, which never finalizes a
        # dropped generator, behave the same.
        with pytest.raises(RuntimeError, match="exhausted or closed"):
            _ = reader.sha256
    with open_capture(path) as reader:
        frames = reader.frames()
        next(frames)
        with pytest.raises(RuntimeError, match="exhausted or closed"):
            _ = reader.sha256  # most of the file is unread while frames() is live
        frames.close()
        assert reader.sha256 == hashlib.sha256(content).hexdigest()  # the rest is read now, once
        with pytest.raises(RuntimeError, match="once"):
            reader.frames()
    with open_capture(path) as reader:
        pass
    with pytest.raises(RuntimeError, match="closed before it was read to the end"):
        _ = reader.sha256
    with open_capture(path) as reader:
        next(reader.frames())
    with pytest.raises(RuntimeError, match="closed before it was read to the end"):
        _ = reader.sha256  # closing the reader closed its live frames() too


# errors -------------------------------------------------------------------------------------------------


def format_error(path: Path) -> CaptureFormatError:
    with pytest.raises(CaptureFormatError) as caught, open_capture(path) as reader:
        for _ in reader.frames():
            pass
    return caught.value


GOOD_PCAP = pcap([(TS, 0, ETH_FRAME, 60), (TS, 1, ETH_FRAME, 60)])
GOOD_PCAP_GZ = gzip.compress(GOOD_PCAP)
SECOND_RECORD = 24 + 16 + len(ETH_FRAME)  # offset of the second record header in GOOD_PCAP


def error_case(content: bytes, message: str, offset: int | None, case_id: str) -> Any:
    return pytest.param(content, message, offset, id=case_id)


@pytest.mark.parametrize(
    ("content", "message", "offset"),
    [
        error_case(b"", "empty file", None, "empty"),
        error_case(b"<!DOCTYPE html>", "not a capture file .*accepted: pcap .*pcapng", 0, "html"),
        error_case(gzip.compress(b""), "empty gzip stream", None, "empty-gzip"),
        error_case(gzip.compress(b"%PDF-1.7 and more"), "not a capture file", 0, "gzipped-pdf"),
        error_case(GOOD_PCAP[:20], "inside the 24-byte pcap file header", 0, "cut-file-header"),
        error_case(
            GOOD_PCAP[: SECOND_RECORD + 5], "inside a record header", SECOND_RECORD, "cut-record-header"
        ),
        error_case(
            GOOD_PCAP[:-1], f"inside a {len(ETH_FRAME)}-byte packet record", SECOND_RECORD, "cut-body"
        ),
        error_case(
            gzip.compress(GOOD_PCAP[:-1]),
            r"truncated capture \(gzip-decompressed content\): .*packet record",
            SECOND_RECORD,
            "cut-body-gzipped",
        ),
        # Version field (u16 after the magic) says 1.4.
        error_case(GOOD_PCAP[:4] + b"\x01\x00" + GOOD_PCAP[6:], "unsupported pcap version 1.4", 4, "version"),
        error_case(
            pcap([(TS, 0, bytes(70_000), 70_000)], snaplen=1500),
            "70000 captured bytes.*snaplen 1500",
            24,
            "caplen",
        ),
        error_case(
            pcap([(TS, 0, bytes(MAX_CAPLEN + 1), 0)], snaplen=0), f"{MAX_CAPLEN + 1} captured", 24, "huge"
        ),
        error_case(GOOD_PCAP_GZ[:-3], "ends inside its gzip stream", len(GOOD_PCAP_GZ) - 3, "cut-gzip"),
        # The gzip trailer's CRC-32 (the 4 bytes before the length) zeroed.
        error_case(GOOD_PCAP_GZ[:-8] + bytes(4) + GOOD_PCAP_GZ[-4:], "corrupt gzip", None, "gzip-crc"),
        error_case(GOOD_PCAP_GZ + b"trailing junk", "corrupt gzip", None, "gzip-junk"),
    ],
)
def test_bad_pcap_input_is_one_clear_error(
    tmp_path: Path, content: bytes, message: str, offset: int | None
) -> None:
    error = format_error(write(tmp_path, content))
    assert error.offset == offset
    assert error.path == str(tmp_path / "capture.pcap")
    assert re.search(message, str(error)), str(error)


def test_truncation_has_its_own_class_so_the_caller_may_keep_what_was_read(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_PCAP[:-1])
    frames: list[Frame] = []
    with pytest.raises(CaptureTruncatedError, match="truncated capture"), open_capture(path) as reader:
        frames.extend(reader.frames())
    assert len(frames) == 1


LE = "<"
SHB_IDB = shb(LE) + idb(LE, LINKTYPE_ETHERNET)  # 28 + 20 bytes
EPB = epb(LE, 0, 0, IP_PACKET)  # 64 bytes


@pytest.mark.parametrize(
    ("content", "message", "offset"),
    [
        # The SHB's byte-order magic (after type and length) is neither 1a2b3c4d nor its byte swap.
        error_case(shb(LE)[:8] + b"\x01\x02\x03\x04" + shb(LE)[12:], "byte-order magic", 8, "byte-order"),
        # Major version (u16 after the byte-order magic) 2.
        error_case(shb(LE)[:12] + b"\x02\x00" + shb(LE)[14:], "unsupported pcapng version 2.0", 0, "version"),
        # Block headers (type, length) with impossible lengths.
        error_case(
            shb(LE) + struct.pack(LE + "II", 6, 30) + bytes(30), "impossible length 30", 28, "length-30"
        ),
        error_case(shb(LE) + struct.pack(LE + "II", 6, 8) + bytes(8), "impossible length 8", 28, "length-8"),
        error_case(
            shb(LE) + struct.pack(LE + "II", 6, 1 << 30) + bytes(8), "impossible length", 28, "length-1G"
        ),
        error_case(
            SHB_IDB[:-4] + struct.pack(LE + "I", 24),
            "trailing length 24 differs from leading length 20",
            44,
            "trailer",
        ),
        error_case(
            SHB_IDB + epb(LE, 1, 0, IP_PACKET), "interface 1 but its section describes 1", 48, "no-if-1"
        ),
        error_case(
            shb(LE) + spb(LE, 20, IP_PACKET), "interface 0 but its section describes 0", 28, "spb-no-if"
        ),
        error_case(SHB_IDB + EPB[:-2], "ends inside a 64-byte pcapng block of type 0x6", 48, "cut-block"),
        error_case(SHB_IDB + EPB + b"\x06\0\0", "inside a pcapng block header", 112, "cut-header"),
        error_case(
            shb(LE) + idb(LE, 1, 0, (IF_TSRESOL, b"\x06\x06")), "if_tsresol option of 2 bytes", 44, "tsresol"
        ),
        error_case(
            shb(LE) + idb(LE, 1, 0, (IF_TSOFFSET, b"\x01")), "if_tsoffset option of 1 bytes", 44, "tsoffset"
        ),
        # IDB: link type, reserved, snaplen, then an if_name option claiming 9 bytes with 4 left in the block.
        error_case(
            shb(LE) + block(LE, 1, struct.pack(LE + "HHIHH", 1, 0, 0, IF_NAME, 9) + b"eth0"),
            "runs past",
            44,
            "option",
        ),
        error_case(
            shb(LE) + idb(LE, 1, 100) + epb(LE, 0, 0, bytes(70_000)),
            "70000 captured bytes.*snaplen 100",
            48,
            "caplen",
        ),
        # DSB: secrets type, secrets length 9, but only 4 bytes of secrets in the block.
        error_case(
            shb(LE) + block(LE, 0x0A, struct.pack(LE + "II", TLS_KEY_LOG, 9) + b"abcd"),
            "9 bytes of secrets",
            28,
            "dsb",
        ),
    ],
)
def test_bad_pcapng_input_is_one_clear_error(
    tmp_path: Path, content: bytes, message: str, offset: int
) -> None:
    error = format_error(write(tmp_path, content, "capture.pcapng"))
    assert error.offset == offset
    assert re.search(message, str(error)), str(error)


def test_an_enhanced_packet_block_whose_data_overruns_it_is_an_error(tmp_path: Path) -> None:
    block_bytes = bytearray(EPB)
    struct.pack_into(LE + "I", block_bytes, 20, 40)  # captured length 40: data and options would be 40 + 12
    error = format_error(write(tmp_path, SHB_IDB + bytes(block_bytes)))
    assert "claims 40 captured bytes in 64 bytes" in str(error)


def test_unusable_files_are_input_errors_with_the_os_reason(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.pcap: cannot open capture: No such file"):
        open_capture(tmp_path / "missing.pcap")
    with pytest.raises(InputError, match="Is a directory"):
        open_capture(tmp_path)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_a_read_error_is_an_input_error_with_the_os_reason() -> None:
    # /proc/self/mem read at offset 0 (never mapped) fails with EIO: a real read error.
    with pytest.raises(InputError, match=r"/proc/self/mem: cannot read capture: Input/output error"):
        open_capture(Path("/proc/self/mem"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_PCAP)
    path.chmod(0)
    with pytest.raises(InputError, match="Permission denied"):
        open_capture(path)


# fuzzing ------------------------------------------------------------------------------------------------

# Prefixes that get random bytes past format detection.
MAGICS = [
    b"",  # none
    b"\xd4\xc3\xb2\xa1",  # pcap, microseconds, little-endian
    b"\xa1\xb2\x3c\x4d",  # pcap, nanoseconds, big-endian
    b"\x34\xcd\xb2\xa1",  # modified pcap, little-endian
    b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a",  # pcapng SHB: type, length 28, byte-order magic
    b"\x1f\x8b",  # gzip
]
VALID = [
    GOOD_PCAP,
    pcap([(TS, 1, ETH_FRAME, 60)] * 3, order=">", magic=0xA1B23C4D),
    two_section_pcapng()[0],
    gzip.compress(two_section_pcapng()[0]),
]
FUZZ_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "capture"


def only_frames_or_format_error(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    try:
        reader = open_capture(path)
    except CaptureFormatError:
        return
    with reader:
        try:
            for timestamp, linktype, data, orig_len in reader.frames():
                assert (
                    isinstance(timestamp, float) and isinstance(linktype, int) and isinstance(orig_len, int)
                )
                assert isinstance(data, bytes) and len(data) <= MAX_CAPLEN
        except CaptureFormatError:
            pass
        assert reader.sha256 == hashlib.sha256(content).hexdigest()


@FUZZ_SETTINGS
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(fuzz_path: Path, magic: bytes, tail: bytes) -> None:
    only_frames_or_format_error(fuzz_path, magic + tail)


@FUZZ_SETTINGS
@given(data=st.data(), valid=st.sampled_from(VALID))
def test_fuzz_mutated_and_truncated_valid_files(fuzz_path: Path, data: st.DataObject, valid: bytes) -> None:
    content = bytearray(valid)
    for _ in range(data.draw(st.integers(0, 4), label="mutations")):
        position = data.draw(st.integers(0, len(content) - 1), label="position")
        content[position] = data.draw(st.integers(0, 255), label="byte")
    cut = data.draw(st.integers(0, len(content)), label="length")
    only_frames_or_format_error(fuzz_path, bytes(content[:cut]))


# the real-capture corpus, against scapy's readers and tshark's capinfos ----------------------------------


def corpus_files() -> list[Any]:
    files = CORPUS / "files"
    if not files.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"corpus not found at {CORPUS.resolve()}"))]
    return [pytest.param(path, id=path.name) for path in sorted(files.iterdir())]


def scapy_frames(path: Path) -> Iterator[tuple[float, int, bytes, int]]:
    from scapy.utils import RawPcapNgReader, RawPcapReader

    with RawPcapReader(str(path)) as reader:  # its metaclass returns a RawPcapNgReader for pcapng
        while True:
            try:
                # The public iterator cuts frames at 65535 bytes; ask for them whole.
                data, meta = cast(tuple[bytes, Any], reader._read_packet(size=MAX_CAPLEN))
            except EOFError:
                return
            if isinstance(reader, RawPcapNgReader):
                yield ((meta.tshigh << 32) | meta.tslow) / meta.tsresol, meta.linktype, data, meta.wirelen
            else:
                per_second = 10**9 if reader.nano else 10**6
                yield meta.sec + meta.usec / per_second, reader.linktype, data, meta.wirelen


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_files())
def test_corpus_file_reads_as_scapy_and_capinfos_read_it(path: Path) -> None:
    truth = json.loads((CORPUS / "truth" / f"{path.name}.json").read_text())
    with open_capture(path) as reader:
        frames = list(reader.frames())
        # Magic bytes decide: tshark's "File type" (one .pcapng name in the corpus has been a classic pcap).
        assert reader.format == truth["capinfos"]["File type"]
        assert reader.sha256 == truth["sha256"]
    assert len(frames) == int(truth["capinfos"]["Number of packets"])
    assert_frames(frames, list(scapy_frames(path)))
