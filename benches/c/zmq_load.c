/* Load generator for the forwarding benchmark (libzmq).
 *
 * usage: zmq_load PULL_ENDPOINT COUNT PAYLOAD_BYTES HWM [RATE]
 *
 * PUSHes two-frame messages [topic, payload] to a forwarder's PULL socket.
 * Protocol with the harness (stdout lines, stdin commands):
 *   1. prints "probing", then sends a "bench.probe" message every 10 ms
 *      (non-blocking) until a line "go" arrives on stdin. Subscribers print
 *      their own readiness when they see a probe, so the harness knows every
 *      subscription is in place before the data starts.
 *   2. sends COUNT messages "bench.t" at full speed, or paced to RATE msg/s if
 *      RATE > 0 (blocking sends, SNDHWM = HWM); payload bytes 0..8 hold the message index (u64 big-endian), the
 *      rest is filler. Prints "sent count=N elapsed_us=T".
 *   3. sends an end marker "bench.end" every 10 ms until stdin closes or 120 s
 *      pass, then exits. A subscriber stops at the first marker it sees.
 * Every wait is bounded: a data send that blocks for 30 s aborts the run.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Waits up to timeout_ms for stdin. Returns 1 with a line read into buf,
 * 0 on timeout, -1 on EOF or error. */
static int stdin_line(char *buf, size_t len, int timeout_ms) {
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r == 0) return 0;
    if (r < 0) return errno == EINTR ? 0 : -1;
    if (!fgets(buf, (int)len, stdin)) return -1;
    return 1;
}

static int send_two(void *sock, const char *topic, const void *payload, size_t n, int flags) {
    if (zmq_send(sock, topic, strlen(topic), ZMQ_SNDMORE | flags) < 0) return -1;
    if (zmq_send(sock, payload, n, flags) < 0) return -1;
    return 0;
}

static void put_u64_be(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)(v & 0xff); v >>= 8; }
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s PULL_ENDPOINT COUNT PAYLOAD_BYTES HWM [RATE]\n", argv[0]);
        return 2;
    }
    const char *endpoint = argv[1];
    uint64_t count = strtoull(argv[2], NULL, 10);
    size_t size = (size_t)strtoul(argv[3], NULL, 10);
    int hwm = atoi(argv[4]);
    double rate = argc == 6 ? atof(argv[5]) : 0.0;
    if (size < 8) size = 8;

    void *ctx = zmq_ctx_new();
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    int linger = 0, sndtimeo = 30000;
    zmq_setsockopt(push, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(push, endpoint) != 0) {
        fprintf(stderr, "zmq_load: connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    unsigned char *payload = malloc(size);
    if (!payload) return 1;
    memset(payload, 'x', size);
    put_u64_be(payload, UINT64_MAX);
    printf("probing\n");
    fflush(stdout);

    char line[64];
    int64_t probe_deadline = now_us() + 120 * 1000000LL;
    for (;;) {
        int r = stdin_line(line, sizeof line, 10);
        if (r < 0) { fprintf(stderr, "zmq_load: stdin closed before go\n"); return 1; }
        if (r > 0 && strncmp(line, "go", 2) == 0) break;
        if (now_us() > probe_deadline) { fprintf(stderr, "zmq_load: no go within 120 s\n"); return 1; }
        send_two(push, "bench.probe", payload, size, ZMQ_DONTWAIT); /* EAGAIN: not connected yet */
    }

    zmq_setsockopt(push, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    int64_t t0 = now_us();
    for (uint64_t i = 0; i < count; i++) {
        if (rate > 0 && i % 64 == 0) {
            /* Pacing: wait until message i is due (t0 + i / RATE). */
            int64_t due = t0 + (int64_t)((double)i * 1e6 / rate);
            int64_t ahead = due - now_us();
            if (ahead > 0) {
                struct timespec ts = {.tv_sec = ahead / 1000000, .tv_nsec = (ahead % 1000000) * 1000};
                nanosleep(&ts, NULL);
            }
        }
        put_u64_be(payload, i);
        if (send_two(push, "bench.t", payload, size, 0) != 0) {
            fprintf(stderr, "zmq_load: send %llu: %s\n", (unsigned long long)i, zmq_strerror(zmq_errno()));
            return 1;
        }
    }
    int64_t t1 = now_us();
    printf("sent count=%llu elapsed_us=%lld\n", (unsigned long long)count, (long long)(t1 - t0));
    fflush(stdout);

    put_u64_be(payload, UINT64_MAX);
    int64_t end_deadline = now_us() + 120 * 1000000LL;
    while (now_us() < end_deadline) {
        send_two(push, "bench.end", payload, size, ZMQ_DONTWAIT);
        if (stdin_line(line, sizeof line, 10) < 0) break;
    }
    zmq_close(push);
    zmq_ctx_term(ctx);
    free(payload);
    return 0;
}
