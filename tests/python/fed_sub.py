"""pyzmq SUB for federation tests: receives every message under PREFIX at
one broadcaster and checks that each publisher topic arrived exactly once,
in publish order, and each origin's seqs only increase.

usage: fed_sub.py PUB PREFIX N TOPIC...
Prints "ready" once a heartbeat came (the subscription is live), then waits
until every TOPIC has N messages ("line 0" .. "line N-1"), keeps listening
QUIET seconds for duplicates, prints "ok <messages>" and exits 0; otherwise
prints what went wrong on stderr and exits 1.
"""

import sys
import time

import zmq

from fanfare_wire import FLAG_HEARTBEAT, decode_stamp

TIMEOUT_S = 90
QUIET_S = 1.5


def main():
    pub_ep, prefix, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
    topics = [t.encode() for t in sys.argv[4:]]
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, prefix)
    sub.setsockopt(zmq.SUBSCRIBE, b"_fanfare.hb.")
    sub.connect(pub_ep)
    got = {t: [] for t in topics}
    last_seq = {}
    errors = []
    total = 0
    ready = False
    deadline = time.monotonic() + TIMEOUT_S
    done_at = None
    while True:
        now = time.monotonic()
        if done_at is not None and now >= done_at:
            break
        if now >= deadline:
            missing = {t.decode(): n - len(v) for t, v in got.items() if len(v) < n}
            errors.append(f"timed out; missing {missing}")
            break
        wait = (done_at if done_at is not None else deadline) - now
        if not sub.poll(max(1, int(wait * 1000))):
            continue
        topic, stamp, payload = sub.recv_multipart()
        st = decode_stamp(stamp)
        if st["flags"] & FLAG_HEARTBEAT:
            if not ready:
                ready = True
                print("ready", flush=True)
            continue
        if not topic.startswith(prefix):
            continue
        total += 1
        key = (st["origin"], st["epoch"])
        if key in last_seq and st["seq"] <= last_seq[key]:
            errors.append(f"{key}: seq {st['seq']} after {last_seq[key]} on {topic!r}")
        last_seq[key] = st["seq"]
        if topic not in got:
            errors.append(f"unexpected topic {topic!r}")
            continue
        got[topic].append(payload)
        if done_at is None and all(len(v) >= n for v in got.values()):
            done_at = time.monotonic() + QUIET_S
    for t, v in got.items():
        want = [b"line %d" % i for i in range(n)]
        if v != want:
            dups = len(v) - len(set(v))
            errors.append(f"{t!r}: {len(v)} messages, {dups} duplicates, in order: {v == sorted(v, key=lambda p: int(p.split()[1]))}")
    if errors:
        for e in errors[:20]:
            print(e, file=sys.stderr)
        sys.exit(1)
    print(f"ok {total}", flush=True)


if __name__ == "__main__":
    main()
