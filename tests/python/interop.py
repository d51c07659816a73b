"""Interop with real libzmq (pyzmq): PUSH two-frame messages, SUB by prefix,
decode stamps per PROTOCOL.md, then ask the replay endpoint (DEALER and REQ).

usage: interop.py PULL PUB REPLAY ORIGIN_ID
Exits 0 and prints "interop ok" when every check passed.
"""

import sys
import time

import zmq

from fanfare_wire import (FLAG_HEARTBEAT, U64_MAX, decode_stamp, lane_of, now_us,
                          parse_reply, range_request, u64)

TIMEOUT_MS = 10_000
N = 200


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def recv(sock):
    if not sock.poll(TIMEOUT_MS):
        check(False, "receive timed out")
    return sock.recv_multipart()


def main():
    pull_ep, pub_ep, replay_ep, origin = sys.argv[1:5]
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(pull_ep)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"interop.")
    sub.setsockopt(zmq.SUBSCRIBE, b"_fanfare.hb.")
    sub.connect(pub_ep)

    # The subscription reaches the PUB asynchronously: probe until it is live.
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        check(time.monotonic() < deadline, "subscription never became live")
        push.send_multipart([b"interop.sync-probe", b"probe"])
        if sub.poll(100):
            f = sub.recv_multipart()
            if f[0] == b"interop.sync-probe":
                break

    t0 = now_us()
    for i in range(N):
        # Interleave a topic the prefix does not cover: it must not arrive.
        push.send_multipart([b"other.topic", b"x%d" % i])
        push.send_multipart([b"interop.room%d" % (i % 3), b"payload-%d" % i])

    got = []
    heartbeats = 0
    while len(got) < N:
        frames = recv(sub)
        check(len(frames) == 3, f"egress has 3 frames, got {len(frames)}")
        topic, stamp, payload = frames
        st = decode_stamp(stamp)
        if topic.startswith(b"_fanfare.hb."):
            check(st["flags"] & FLAG_HEARTBEAT, "heartbeat flag set on heartbeats")
            check(topic == b"_fanfare.hb." + origin.encode(), f"heartbeat topic {topic!r}")
            heartbeats += 1
            continue
        check(topic.startswith(b"interop."), f"prefix filter held: got {topic!r}")
        if topic == b"interop.sync-probe":
            continue
        got.append((topic, stamp, payload, st))

    prev = None
    for i, (topic, stamp, payload, st) in enumerate(got):
        check(payload == b"payload-%d" % i, f"order/payload at {i}: {payload!r}")
        check(topic == b"interop.room%d" % (i % 3), f"topic at {i}: {topic!r}")
        check(st["origin"] == origin, f"origin {st['origin']!r}")
        check(st["hops"] == 0, "hops is 0 at the origin")
        check(st["flags"] & FLAG_HEARTBEAT == 0, "data is not a heartbeat")
        check(st["meta"] is None, "two-frame ingress carries no meta")
        check(st["reserved"] == 0, "reserved bytes are 0")
        check(st["lane"] == lane_of(topic), f"lane {st['lane']} == fnv fold of first word")
        check(0 < st["epoch"] <= now_us(), "epoch is a past µs timestamp")
        check(t0 - 5_000_000 <= st["timestamp_us"] <= now_us() + 1_000_000,
              "timestamp is now-ish")
        if prev is not None:
            check(st["epoch"] == prev["epoch"], "same epoch")
            # The interleaved other.* messages take seqs too: seq grows by 2.
            check(st["seq"] == prev["seq"] + 2, f"seq {prev['seq']} -> {st['seq']}")
            # Every interop.* topic shares one lane, so lane seq has no holes.
            check(st["lane_seq"] == prev["lane_seq"] + 1, "lane seq consecutive")
        prev = st

    first, last = got[0][3]["seq"], got[-1][3]["seq"]
    epoch = got[0][3]["epoch"]

    # Replay via DEALER: the same messages, byte for byte, filtered by pattern.
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(replay_ep)
    dealer.send_multipart(range_request(b"r1", "", 0, first, last, patterns=["interop.#"]))
    head, msgs = parse_reply(recv(dealer))
    check(head["req_id"] == b"r1", "req id echoed")
    check(head["status"] == "ok", f"status {head['status']}")
    check(head["epoch"] == epoch, "reply epoch is the current one")
    check(head["next"] == last + 1, f"next {head['next']} == {last + 1}")
    check(len(msgs) == N, f"replayed {len(msgs)} of {N}")
    for (t, s, p), (t2, s2, p2, _) in zip(msgs, got):
        check((t, s, p) == (t2, s2, p2), "replayed message identical to live one")

    # Lane filter + no pattern: only the interop lane, same N messages.
    lane = got[0][3]["lane"]
    dealer.send_multipart(range_request(b"r2", origin, epoch, first, U64_MAX, lane=lane))
    head, msgs = parse_reply(recv(dealer))
    check(head["status"] == "ok", f"lane status {head['status']}")
    check(len(msgs) >= N, f"lane filter keeps the lane: {len(msgs)}")
    check(all(lane_of(t) == lane for t, _, _ in msgs), "lane filter")

    # State only, unknown origin, unknown epoch, malformed.
    dealer.send_multipart(range_request(b"s", "", 0, 0, 0))
    head, msgs = parse_reply(recv(dealer))
    check(head["status"] == "ok" and not msgs and head["newest"] >= last, "state query")
    dealer.send_multipart(range_request(b"u", "nobody-here", 0, 1, 10))
    head, _ = parse_reply(recv(dealer))
    check(head["status"] == "unknown_origin", f"unknown origin -> {head['status']}")
    dealer.send_multipart(range_request(b"e", origin, epoch - 1, 1, 10))
    head, _ = parse_reply(recv(dealer))
    check(head["status"] == "unknown_epoch" and head["epoch"] == epoch,
          f"unknown epoch -> {head['status']} {head['epoch']}")
    dealer.send_multipart([b"bad", b"range", b"", b"123"])
    head, _ = parse_reply(recv(dealer))
    check(head["status"] == "bad_request", f"malformed -> {head['status']}")

    # REQ peers: the empty delimiter is echoed (pyzmq strips it for us).
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(replay_ep)
    req.send_multipart(range_request(b"q", "", 0, first, first))
    head, msgs = parse_reply(recv(req))
    check(head["status"] == "ok" and len(msgs) == 1 and msgs[0][0] == got[0][0], "REQ replay")

    for s in (push, sub, dealer, req):
        s.close()
    ctx.term()
    print(f"interop ok: {N} messages, seq {first}..{last}, {heartbeats} heartbeats")


if __name__ == "__main__":
    main()
