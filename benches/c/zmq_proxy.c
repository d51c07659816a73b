/* Reference forwarder for the forwarding benchmark: libzmq's own zmq_proxy, PULL -> PUB.
 *
 * usage: zmq_proxy HWM
 *
 * Binds PULL and PUB on tcp://127.0.0.1:* (port 0), sets RCVHWM/SNDHWM = HWM,
 * prints "ready pull=tcp://127.0.0.1:P pub=tcp://127.0.0.1:Q" and runs
 * zmq_proxy until it is killed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

static void *bind_any(void *ctx, int type, int hwm, char *endpoint, size_t len) {
    void *sock = zmq_socket(ctx, type);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_bind(sock, "tcp://127.0.0.1:*") != 0) {
        fprintf(stderr, "zmq_proxy: bind: %s\n", zmq_strerror(zmq_errno()));
        exit(1);
    }
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, endpoint, &len);
    return sock;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s HWM\n", argv[0]);
        return 2;
    }
    int hwm = atoi(argv[1]);
    char pull_ep[256], pub_ep[256];
    void *ctx = zmq_ctx_new();
    void *pull = bind_any(ctx, ZMQ_PULL, hwm, pull_ep, sizeof pull_ep);
    void *pub = bind_any(ctx, ZMQ_PUB, hwm, pub_ep, sizeof pub_ep);
    printf("ready pull=%s pub=%s\n", pull_ep, pub_ep);
    fflush(stdout);
    zmq_proxy(pull, pub, NULL);
    fprintf(stderr, "zmq_proxy: %s\n", zmq_strerror(zmq_errno()));
    return 1;
}
