/* TLS load generator for benches/bench_tls.py: C, OpenSSL, one thread, epoll.
 *
 * The TLS twin of echo_client.c, and like it the same for every loop under test. Each of
 * the C connections does its TLS handshake at start-up (blocking, verifying the server's
 * certificate against CAFILE and its name against HOSTNAME), then sends a message of SIZE
 * bytes, reads back exactly SIZE bytes, checks them and starts the next message: one
 * message in flight per connection. While a message is being sent the connection also
 * reads, so a server that echoes before it has the whole message never deadlocks against
 * a full socket buffer. Sockets are non-blocking after the handshake; SSL_write runs with
 * partial writes enabled and is retried with the same arguments after WANT_WRITE, as
 * OpenSSL requires.
 *
 * Warm-up, measuring window and latency are measured exactly as in echo_client.c, and
 * the output line has the same keys, so bench_echo.parse_result reads it:
 *   RESULT conns=10 size=1024 reply=1024 count=N elapsed=S rate=MSG/S mbps=MB/S
 *          mean_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=.. cpu=CLIENT_CPU_FRACTION
 * preceded by "INFO <protocol> <cipher>" (what the first connection negotiated).
 * On failure a message on stderr (with OpenSSL's error queue) and exit 1.
 *
 *   tls_echo_client -a HOST -p PORT -C CAFILE [-H HOSTNAME] [-c CONNS] [-n SIZE]
 *                   [-w WARMUP_S] [-d DURATION_S] [-t STALL_S]
 *
 * Build: cc -O2 -o tls_echo_client tls_echo_client.c -lssl -lcrypto
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MAX_CHUNK (64 * 1024) /* plaintext bytes per SSL_write() call */

struct conn {
    int fd;
    SSL *ssl;
    uint32_t events; /* current epoll interest */
    size_t sent;     /* bytes of the current message sent */
    size_t recvd;    /* bytes of the current reply received */
    size_t wlen;     /* length of the SSL_write to repeat after WANT_WRITE (0: none) */
    uint64_t t_start;
    uint64_t seq;
    unsigned char *sbuf, *rbuf;
};

static size_t g_size;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("tls_echo_client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int connect_to(const char *host, const char *port) {
    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        die("getaddrinfo %s:%s: %s", host, port, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
        die("connect %s:%s: %s", host, port, strerror(errno));
    freeaddrinfo(res);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void set_events(int ep, struct conn *c, uint32_t events) {
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    c->events = events;
}

/* Encrypt and send what the socket takes; 0 when the message is fully sent, 1 when the
 * socket is full (wait for EPOLLOUT). */
static int pump_send(struct conn *c) {
    while (c->sent < g_size) {
        size_t left = g_size - c->sent;
        if (c->wlen == 0)
            c->wlen = left < MAX_CHUNK ? left : MAX_CHUNK;
        int k = SSL_write(c->ssl, c->sbuf + c->sent, (int)c->wlen);
        if (k > 0) {
            c->sent += (size_t)k;
            c->wlen = 0;
            continue;
        }
        int err = SSL_get_error(c->ssl, k);
        if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ)
            return 1; /* repeat the same SSL_write (c->wlen) when the socket is ready */
        die("SSL_write failed (SSL error %d, errno %s)", err, strerror(errno));
    }
    return 0;
}

/* Read and decrypt what has arrived; 0 when the reply is complete. */
static int pump_recv(struct conn *c) {
    while (c->recvd < g_size) {
        size_t left = g_size - c->recvd;
        int k = SSL_read(c->ssl, c->rbuf + c->recvd, (int)(left < MAX_CHUNK ? left : MAX_CHUNK));
        if (k > 0) {
            c->recvd += (size_t)k;
            continue;
        }
        int err = SSL_get_error(c->ssl, k);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
            return 1;
        if (err == SSL_ERROR_ZERO_RETURN)
            die("server closed the connection (close_notify; %zu of %zu reply bytes)",
                c->recvd, g_size);
        die("SSL_read failed (SSL error %d, errno %s; %zu of %zu reply bytes)", err,
            strerror(errno), c->recvd, g_size);
    }
    return 0;
}

static void start_message(int ep, struct conn *c) {
    c->seq++;
    /* every message differs: a stale or misplaced reply fails the check */
    memcpy(c->sbuf, &c->seq, g_size < sizeof c->seq ? g_size : sizeof c->seq);
    c->sent = c->recvd = 0;
    c->t_start = now_ns();
    set_events(ep, c, pump_send(c) ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *sorted, size_t n, double p) {
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5); /* nearest rank */
    return sorted[i] / 1e3;
}

static void usage(void) {
    fprintf(stderr, "usage: tls_echo_client -a HOST -p PORT -C CAFILE [-H HOSTNAME] "
                    "[-c CONNS] [-n SIZE] [-w WARMUP_S] [-d DURATION_S] [-t STALL_S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = NULL, *cafile = NULL, *hostname = "localhost";
    int nconns = 10;
    double warmup = 0.2, duration = 1.0, stall = 10.0;
    long long size = 1024;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:C:H:c:n:w:d:t:")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = optarg; break;
        case 'C': cafile = optarg; break;
        case 'H': hostname = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'n': size = atoll(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 't': stall = atof(optarg); break;
        default: usage();
        }
    }
    if (!port || !cafile || nconns < 1 || size < 1 || duration <= 0 || stall <= 0)
        usage();
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
#endif
    signal(SIGPIPE, SIG_IGN);
    g_size = (size_t)size;

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        die("SSL_CTX_new");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1)
        die("cannot load CA file %s", cafile);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns)
        die("out of memory");
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->sbuf = malloc(g_size);
        c->rbuf = malloc(g_size);
        if (!c->sbuf || !c->rbuf)
            die("out of memory");
        for (size_t j = 0; j < g_size; j++)
            c->sbuf[j] = (unsigned char)(j * 31 + i * 7 + (j >> 10));
        c->fd = connect_to(host, port);
        c->ssl = SSL_new(ctx);
        if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
            die("SSL_new/SSL_set_fd");
        SSL_set_tlsext_host_name(c->ssl, hostname);
        if (SSL_set1_host(c->ssl, hostname) != 1)
            die("SSL_set1_host");
        if (SSL_connect(c->ssl) != 1) /* blocking handshake */
            die("TLS handshake with %s:%s failed", host, port);
        if (i == 0)
            printf("INFO %s %s\n", SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl));
        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
            die("fcntl: %s", strerror(errno));
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }

    size_t cap = 1 << 16, count = 0;
    uint64_t lat_sum = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    if (!lat)
        die("out of memory");
    const uint64_t warm_end = now_ns() + (uint64_t)(warmup * 1e9);
    const uint64_t dur_ns = (uint64_t)(duration * 1e9);
    uint64_t t0 = 0, t_stop = 0, last_progress = now_ns();
    double cpu0 = 0;
    int measuring = 0, done = 0;

    for (int i = 0; i < nconns; i++)
        start_message(ep, &conns[i]);

    struct epoll_event events[64];
    while (!done) {
        int n = epoll_wait(ep, events, 64, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        uint64_t now = now_ns();
        if (n == 0) {
            if ((now - last_progress) / 1e9 > stall)
                die("no reply completed for %.1f s (%zu messages measured)", stall, count);
            continue;
        }
        for (int e = 0; e < n && !done; e++) {
            struct conn *c = events[e].data.ptr;
            if (c->sent < g_size && !pump_send(c))
                set_events(ep, c, EPOLLIN);
            if (pump_recv(c))
                continue;
            if (c->sent < g_size)
                die("reply complete before the message was sent (%zu of %zu bytes)", c->sent,
                    g_size);
            now = now_ns();
            if (memcmp(c->rbuf, c->sbuf, g_size) != 0)
                die("reply %llu on connection %d differs from what was sent",
                    (unsigned long long)c->seq, (int)(c - conns));
            last_progress = now;
            if (!measuring) {
                if (now >= warm_end) { /* the window opens on a completion */
                    measuring = 1;
                    t0 = now;
                    cpu0 = cpu_seconds();
                }
            } else {
                if (count == cap) {
                    cap *= 2;
                    lat = realloc(lat, cap * sizeof *lat);
                    if (!lat)
                        die("out of memory");
                }
                lat[count++] = now - c->t_start;
                lat_sum += now - c->t_start;
                if (now - t0 >= dur_ns) { /* ... and closes on one */
                    t_stop = now;
                    done = 1;
                    break;
                }
            }
            start_message(ep, c);
        }
    }

    double elapsed = (t_stop - t0) / 1e9;
    double cpu = (cpu_seconds() - cpu0) / elapsed;
    qsort(lat, count, sizeof *lat, cmp_u64);
    double rate = count / elapsed;
    printf("RESULT conns=%d size=%zu reply=%zu count=%zu elapsed=%.6f rate=%.1f mbps=%.2f "
           "mean_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f cpu=%.3f\n",
           nconns, g_size, g_size, count, elapsed, rate, rate * (double)g_size / 1e6,
           count ? lat_sum / 1e3 / (double)count : 0.0, pct_us(lat, count, 0.50),
           pct_us(lat, count, 0.90), pct_us(lat, count, 0.99), pct_us(lat, count, 1.0), cpu);
    fflush(stdout);
    for (int i = 0; i < nconns; i++) {
        SSL_free(conns[i].ssl); /* no close_notify: the server is killed after the run */
        close(conns[i].fd);
    }
    SSL_CTX_free(ctx);
    return 0;
}
