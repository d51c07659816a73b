"""A foreign libzmq peer (pyzmq PUSH) sending malformed messages, then one
good message whose topic is given, so the caller can tell when all arrived.

usage: bad_input.py PULL MAX_PAYLOAD GOOD_TOPIC
Prints one line per bad message kind: "sent REASON COUNT".
"""

import sys

import zmq


def main():
    pull_ep, max_payload, good_topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(pull_ep)
    cases = {
        "frame_count": [
            [b"bad.one-frame"],
            [b"bad.four", b"a", b"b", b"c"],
            [b"bad.many"] + [b"x"] * 20,
        ],
        "bad_topic": [
            [b"", b"empty topic"],
            [b"bad.\xff\xfe", b"non utf-8"],
            [b"t" * 257, b"topic longer than 256 bytes"],
            [b"bad..word", b"empty word"],
            [b"bad.*", b"wildcard"],
            [b"bad topic", b"whitespace"],
        ],
        "reserved_topic": [
            [b"_fanfare.hb.forged", b"forged heartbeat"],
            [b"_fanfare.x", b"reserved"],
        ],
        "oversize_payload": [
            [b"bad.big", b"p" * (max_payload + 1)],
        ],
        "bad_meta": [
            [b"bad.meta", b"\x09garbage", b"payload"],
        ],
    }
    for reason, msgs in cases.items():
        for m in msgs:
            push.send_multipart(m)
        print(f"sent {reason} {len(msgs)}", flush=True)
    push.send_multipart([good_topic.encode(), b"good"])
    push.close()  # linger: delivered before we exit
    ctx.term()


if __name__ == "__main__":
    main()
