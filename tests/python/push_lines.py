"""pyzmq PUSH: sends N two-frame messages [TOPIC, "line i"] and exits.

usage: push_lines.py PULL TOPIC N [START]
(with START, the lines are "line START" .. "line START+N-1")
"""

import sys

import zmq


def main():
    pull_ep, topic, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
    start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 5000)
    push.connect(pull_ep)
    for i in range(start, start + n):
        push.send_multipart([topic, b"line %d" % i])
    push.close()
    ctx.term()


if __name__ == "__main__":
    main()
