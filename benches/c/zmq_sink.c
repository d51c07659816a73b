/* Raw subscriber for the forwarding benchmark (libzmq): what a libzmq SUB sees.
 *
 * usage: zmq_sink PUB_ENDPOINT PREFIX COUNT HWM QUIET_MS DEADLINE_MS
 *
 * Subscribes PREFIX on the forwarder's PUB socket and reads messages
 * [topic, payload] (plain forwarders) or [topic, stamp, payload] (Fanfare).
 *   - "bench.probe": the first one prints "subscribed" (the subscription is in place);
 *   - "bench.t": data; payload bytes 0..8 are the load generator's index, so
 *     loss is counted exactly (a bitmap of COUNT entries; duplicates apart);
 *   - "bench.end": end marker, the run is over.
 * It also stops after QUIET_MS without a message once data has started, or
 * after DEADLINE_MS in all. With Fanfare stamps it also counts jumps in the
 * stamp seq (stamp bytes 16..24), a second, independent loss count.
 * Last line: "result received=R unique=U dups=D elapsed_us=T end=marker|quiet|deadline
 * stamp_missing=M stamped=0|1", where T runs from the first data message to the last.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define MAX_FRAMES 4

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t get_u64_be(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* Receives one multipart message into frames; returns the frame count. */
static int recv_message(void *sock, zmq_msg_t *frames) {
    int n = 0;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) { zmq_msg_close(&part); return -1; }
        int more = zmq_msg_more(&part);
        if (n < MAX_FRAMES) {
            zmq_msg_init(&frames[n]);
            zmq_msg_move(&frames[n], &part);
            n++;
        }
        zmq_msg_close(&part);
        if (!more) return n;
    }
}

static int topic_is(zmq_msg_t *frame, const char *topic) {
    size_t len = strlen(topic);
    return zmq_msg_size(frame) == len && memcmp(zmq_msg_data(frame), topic, len) == 0;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s PUB_ENDPOINT PREFIX COUNT HWM QUIET_MS DEADLINE_MS\n", argv[0]);
        return 2;
    }
    const char *endpoint = argv[1], *prefix = argv[2];
    uint64_t count = strtoull(argv[3], NULL, 10);
    int hwm = atoi(argv[4]);
    int64_t quiet_us = atoll(argv[5]) * 1000, deadline = now_us() + atoll(argv[6]) * 1000;
    unsigned char *seen = calloc(count ? count : 1, 1);
    if (!seen) return 1;

    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, prefix, strlen(prefix));
    if (zmq_connect(sub, endpoint) != 0) {
        fprintf(stderr, "zmq_sink: connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }

    uint64_t received = 0, unique = 0, dups = 0, stamp_missing = 0, last_stamp = 0;
    int subscribed = 0, stamped = 0;
    int64_t first = 0, last = 0, last_any = 0;
    const char *end = "deadline";
    zmq_msg_t frames[MAX_FRAMES];
    int rcvtimeo = 50; /* ms: bounds every blocking receive, so the loop sees its deadlines */
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    for (;;) {
        int n = recv_message(sub, frames);
        int64_t now = now_us();
        if (n < 0) {
            if (now >= deadline) break;
            if (first && now - last_any >= quiet_us) { end = "quiet"; break; }
            continue;
        }
        if (now >= deadline) { for (int i = 0; i < n; i++) zmq_msg_close(&frames[i]); break; }
        last_any = now;
        if (n == 3 && zmq_msg_size(&frames[1]) >= 24) {
            uint64_t seq = get_u64_be((unsigned char *)zmq_msg_data(&frames[1]) + 16);
            if (stamped && seq > last_stamp + 1) stamp_missing += seq - last_stamp - 1;
            if (!stamped || seq > last_stamp) last_stamp = seq;
            stamped = 1;
        }
        zmq_msg_t *payload = &frames[n - 1];
        int done = 0;
        if (n >= 2 && topic_is(&frames[0], "bench.t") && zmq_msg_size(payload) >= 8) {
            uint64_t index = get_u64_be(zmq_msg_data(payload));
            received++;
            if (!first) first = last_any;
            last = last_any;
            if (index < count && !seen[index]) { seen[index] = 1; unique++; }
            else dups++;
        } else if (n >= 1 && topic_is(&frames[0], "bench.probe")) {
            if (!subscribed) { printf("subscribed\n"); fflush(stdout); subscribed = 1; }
        } else if (n >= 1 && topic_is(&frames[0], "bench.end")) {
            end = "marker";
            done = 1;
        }
        for (int i = 0; i < n; i++) zmq_msg_close(&frames[i]);
        if (done) break;
    }
    printf("result received=%llu unique=%llu dups=%llu elapsed_us=%lld end=%s stamp_missing=%llu stamped=%d\n",
           (unsigned long long)received, (unsigned long long)unique, (unsigned long long)dups,
           (long long)(last - first), end, (unsigned long long)stamp_missing, stamped);
    fflush(stdout);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    free(seen);
    return 0;
}
