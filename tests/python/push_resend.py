"""pyzmq PUSH with version 2 metadata (publisher session + seq), re-sending.

Sends N messages [TOPIC, meta v2 (session S, seq i), "msg i"] for i = 1..N,
then sends every one of them again (same session and seq), then one more
(seq N+1, payload "done"). Its own SUB on `_fanfare.ack.<S as 16 hex>`
(subscribed, with heartbeats, before anything is sent) must then receive an
ack whose publisher seq is N+1. Prints "resend ok".

usage: push_resend.py PULL PUB TOPIC N SESSION
"""

import struct
import sys
import time

import zmq

from fanfare_wire import decode_stamp, now_us

FLAG_ACK = 0x04


def meta_v2(publisher: bytes, session: int, seq: int) -> bytes:
    return (bytes([2, len(publisher)]) + publisher + bytes([0])
            + struct.pack(">QQQ", now_us(), session, seq))


def main():
    pull_ep, pub_ep, topic, n, session = sys.argv[1:6]
    topic, n, session = topic.encode(), int(n), int(session)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    ack_topic = b"_fanfare.ack.%016x" % session
    sub.setsockopt(zmq.SUBSCRIBE, ack_topic)
    sub.setsockopt(zmq.SUBSCRIBE, b"_fanfare.hb.")
    sub.setsockopt(zmq.RCVTIMEO, 10000)
    sub.connect(pub_ep)
    sub.recv_multipart()  # a heartbeat: both subscriptions are in force
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(pull_ep)
    for _ in range(2):
        for i in range(1, n + 1):
            push.send_multipart([topic, meta_v2(b"py-resender", session, i), b"msg %d" % i])
    push.send_multipart([topic, meta_v2(b"py-resender", session, n + 1), b"done"])
    deadline = time.time() + 10
    while time.time() < deadline:
        t, stamp, payload = sub.recv_multipart()
        if t != ack_topic:
            continue
        s = decode_stamp(stamp)
        if not s["flags"] & FLAG_ACK or len(payload) != 16:
            raise SystemExit(f"bad ack: {s} {payload!r}")
        acked, seq = struct.unpack(">QQ", payload)
        if acked == n + 1:
            print("resend ok", seq)
            break
    else:
        raise SystemExit("no ack of the last message")
    push.close()
    sub.close()
    ctx.term()


if __name__ == "__main__":
    main()
