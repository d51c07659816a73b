"""libzmq's own ZMTP heartbeats (PING/PONG) against the broadcaster: a SUB and
a PUSH with ZMQ_HEARTBEAT_IVL / ZMQ_HEARTBEAT_TIMEOUT stay connected across
idle periods far longer than the timeout, because the broadcaster answers
PING with PONG. A socket monitor records any disconnect.

usage: zmtp_heartbeat.py PULL PUB
"""

import sys

import zmq
import zmq.utils.monitor as zmon

TIMEOUT_MS = 10_000
IDLE_MS = 1_000  # > 3 × the heartbeat timeout below
ROUNDS = 3


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def heartbeats(sock):
    sock.setsockopt(zmq.HEARTBEAT_IVL, 50)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 300)
    sock.setsockopt(zmq.LINGER, 0)


EVENTS = []


def disconnects(mon, name=""):
    n = 0
    while mon.poll(0):
        ev = zmon.recv_monitor_message(mon)
        EVENTS.append((name, ev["event"]))
        if ev["event"] in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
            n += 1
    return n


def report(mons):
    for name, m in zip(("push", "sub"), mons):
        disconnects(m, name)
    return f"monitor events (name, zmq event id): {EVENTS}"


def main():
    pull_ep, pub_ep = sys.argv[1:3]
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    heartbeats(push)
    push.connect(pull_ep)
    sub = ctx.socket(zmq.SUB)
    heartbeats(sub)
    sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
    mons = [s.get_monitor_socket() for s in (push, sub)]
    sub.connect(pub_ep)

    deadline_polls = TIMEOUT_MS // 100
    while True:
        check(deadline_polls > 0, "subscription never became live")
        deadline_polls -= 1
        push.send_multipart([b"hb.sync-probe", b"probe"])
        if sub.poll(100) and sub.recv_multipart()[0] == b"hb.sync-probe":
            break
    while sub.poll(200):  # drain late probes
        sub.recv_multipart()
    base = sum(disconnects(m, n) for n, m in zip(("push", "sub"), mons))

    for r in range(ROUNDS):
        # Idle: nothing but ZMTP PING/PONG flows (the broadcaster's own
        # heartbeat is set far apart by the caller). A peer that does not
        # answer PING gets disconnected by libzmq after 300 ms.
        check(not sub.poll(IDLE_MS), "nothing arrives while idle")
        push.send_multipart([b"hb.round", b"%d" % r])
        check(sub.poll(TIMEOUT_MS), f"round {r} delivered after idling; {report(mons)}")
        frames = sub.recv_multipart()
        check(frames[0] == b"hb.round" and frames[2] == b"%d" % r, f"round {r}: {frames!r}")

    lost = sum(disconnects(m, n) for n, m in zip(("push", "sub"), mons)) - base
    check(lost == 0, f"{lost} disconnect(s): PING not answered with PONG? {report(mons)}")
    for s in (push, sub):
        s.disable_monitor()
        s.close()
    for m in mons:
        m.close()
    ctx.term()
    print(f"heartbeat ok: {ROUNDS} idle rounds of {IDLE_MS} ms without a disconnect")


if __name__ == "__main__":
    main()
