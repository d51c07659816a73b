"""Fanfare wire format for Python peers (see PROTOCOL.md at the repo root).

Decodes the stamp frame of `[topic, stamp, payload]` and builds replay
requests, exactly as a foreign libzmq peer would, without any Rust code.
"""

import struct
import time

STAMP_FIXED = 40
FLAG_HEARTBEAT = 0x01
FLAG_META = 0x02
U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


def lane_of(topic: bytes) -> int:
    """FNV-1a-32 of the first word, folded to 16 bits."""
    h = 0x811C9DC5
    for b in topic.split(b".", 1)[0]:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return ((h >> 16) ^ (h & 0xFFFF)) & 0xFFFF


def decode_stamp(buf: bytes) -> dict:
    if len(buf) < STAMP_FIXED:
        raise ValueError(f"stamp too short: {len(buf)}")
    version, flags, hops, n, lane, reserved, epoch, seq, lane_seq, ts = struct.unpack(
        ">BBBBHHQQQQ", buf[:STAMP_FIXED]
    )
    if version != 1:
        raise ValueError(f"stamp version {version}")
    if not 1 <= n <= 64 or len(buf) < STAMP_FIXED + n:
        raise ValueError(f"bad origin length {n}")
    origin = buf[STAMP_FIXED : STAMP_FIXED + n].decode("utf-8")
    meta = buf[STAMP_FIXED + n :] if flags & FLAG_META else None
    if not flags & FLAG_META and len(buf) != STAMP_FIXED + n:
        raise ValueError("trailing bytes after origin without the meta flag")
    return dict(
        version=version, flags=flags, hops=hops, lane=lane, reserved=reserved,
        epoch=epoch, seq=seq, lane_seq=lane_seq, timestamp_us=ts, origin=origin,
        meta=meta,
    )


def u64(v: int) -> bytes:
    return struct.pack(">Q", v)


def read_u64(b: bytes) -> int:
    if len(b) != 8:
        raise ValueError(f"number frame of {len(b)} bytes")
    return struct.unpack(">Q", b)[0]


def range_request(req_id: bytes, origin: str, epoch: int, first: int, last: int,
                  lane=None, patterns=()):
    frames = [req_id, b"range", origin.encode(), u64(epoch), u64(first), u64(last),
              b"" if lane is None else struct.pack(">H", lane)]
    frames += [p.encode() for p in patterns]
    return frames


def parse_reply(frames):
    if len(frames) < 6 or (len(frames) - 6) % 3:
        raise ValueError(f"bad reply shape: {len(frames)} frames")
    head = dict(req_id=frames[0], status=frames[1].decode(), epoch=read_u64(frames[2]),
                oldest=read_u64(frames[3]), newest=read_u64(frames[4]),
                next=read_u64(frames[5]))
    msgs = [(frames[i], frames[i + 1], frames[i + 2]) for i in range(6, len(frames), 3)]
    return head, msgs


def now_us() -> int:
    return time.time_ns() // 1000
