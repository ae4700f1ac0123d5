/* Load generator for benches/bench_echo.py: C, one thread, epoll, non-blocking sockets.
 *
 * It never changes with the loop under test. Each of the C connections sends a message of
 * SIZE bytes, reads back exactly REPLY bytes (REPLY = SIZE for echo, a short ack for bulk),
 * checks them and starts the next message: one message in flight per connection. While a
 * message is being sent the connection also reads, so a server that echoes before it has
 * the whole message never deadlocks against a full socket buffer.
 *
 * Warm-up: messages completing before WARMUP seconds have passed are not counted. The
 * measuring window opens at the first completion after that and closes at the first
 * completion at least DURATION seconds later, so both ends fall on completions (exact for
 * one connection sending back to back, as in the bulk case). Latency is per message, from
 * the first byte sent to the last byte received, CLOCK_MONOTONIC. Bulk data goes out with
 * sendfile() from a memfd holding the pattern, so the client does no user-space copy.
 *
 * Output on success, one line on stdout (exit 0):
 *   RESULT conns=10 size=1024 reply=1024 count=N elapsed=S rate=MSG/S mbps=MB/S
 *          mean_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=.. cpu=CLIENT_CPU_FRACTION
 * (cpu: the client's user+system CPU time over the window / the window).
 * On failure a message on stderr and exit 1.
 *
 *   echo_client (-a HOST -p PORT | -u PATH) [-c CONNS] [-n SIZE] [-r REPLY]
 *               [-w WARMUP_S] [-d DURATION_S] [-t STALL_S] [-D]
 *
 * -D: UDP. Each "connection" is a connected UDP socket with one datagram of SIZE bytes in
 * flight; the reply must be the same datagram. A datagram without reply after 100 ms is
 * sent again (counted in resent=; stale replies are ignored), so a lost datagram costs
 * latency, never a stall.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define ACK "ACK!"
#ifndef MAX_CHUNK
#define MAX_CHUNK (256 * 1024) /* bytes per send()/recv() call */
#endif

struct conn {
    int fd;
    uint32_t events;  /* current epoll interest */
    size_t sent;      /* bytes of the current message sent */
    size_t recvd;     /* bytes of the current reply received */
    uint64_t t_start; /* ns, when the current message started */
    uint64_t seq;     /* message number, stamped into echo messages */
    uint64_t t_sent;  /* ns, last (re)send of the current datagram (UDP) */
    unsigned char *sbuf, *rbuf;
};

static size_t g_size, g_reply, g_sbuf_len;
static int g_echo; /* reply is the message itself (else an ack) */
static int g_udp;  /* -D: datagrams */
static size_t g_resent;
static int g_memfd = -1; /* bulk: the pattern in a memfd, sent with sendfile() (no copy
                            from user space: the client stays cheap at several GB/s) */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("echo_client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
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

static int connect_to(const char *host, const char *port, const char *path) {
    int fd;
    if (path) {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        if (strlen(path) >= sizeof sun.sun_path)
            die("unix socket path too long: %s", path);
        strcpy(sun.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0)
            die("connect %s: %s", path, strerror(errno));
    } else {
        struct addrinfo hints, *res;
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, port, &hints, &res);
        if (rc != 0)
            die("getaddrinfo %s:%s: %s", host, port, gai_strerror(rc));
        fd = socket(res->ai_family, g_udp ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (fd < 0)
            die("socket: %s", strerror(errno));
        if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
            die("connect %s:%s: %s", host, port, strerror(errno));
        freeaddrinfo(res);
        int one = 1;
        if (!g_udp)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
        die("fcntl: %s", strerror(errno));
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

/* UDP: send the whole datagram; 0 when sent. */
static int send_datagram(struct conn *c) {
    for (;;) {
        ssize_t k = send(c->fd, c->sbuf, g_size, 0);
        if (k >= 0) {
            c->sent = g_size;
            c->t_sent = now_ns();
            return 0;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 1;
        if (errno == EINTR)
            continue;
        if (errno == ECONNREFUSED) /* an ICMP error of an earlier datagram: resend later */
            return 0;
        die("send: %s", strerror(errno));
    }
}

/* UDP: read datagrams until the reply to the current one; 0 when it came. */
static int recv_datagram(struct conn *c) {
    for (;;) {
        ssize_t k = recv(c->fd, c->rbuf, g_reply, MSG_TRUNC);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == EINTR || errno == ECONNREFUSED)
                continue;
            die("recv: %s", strerror(errno));
        }
        if ((size_t)k == g_reply && memcmp(c->rbuf, c->sbuf, g_reply) == 0) {
            c->recvd = g_reply;
            return 0;
        } /* else a stale or foreign datagram: ignore it */
    }
}

/* Send what the socket takes; 0 when the message is fully sent. */
static int pump_send(struct conn *c) {
    if (g_udp)
        return send_datagram(c);
    while (c->sent < g_size) {
        size_t left = g_size - c->sent;
        size_t off = g_echo ? c->sent : c->sent % g_sbuf_len; /* bulk: repeat the pattern */
        size_t n = left < MAX_CHUNK ? left : MAX_CHUNK;
        if (!g_echo && n > g_sbuf_len - off)
            n = g_sbuf_len - off;
        ssize_t k;
        if (g_memfd >= 0) {
            off_t foff = (off_t)off;
            k = sendfile(c->fd, g_memfd, &foff, n);
            if (k < 0 && (errno == EINVAL || errno == ENOSYS)) {
                g_memfd = -1; /* not supported here: plain send() from now on */
                continue;
            }
        } else {
            k = send(c->fd, c->sbuf + off, n, MSG_NOSIGNAL);
        }
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == EINTR)
                continue;
            die("send: %s", strerror(errno));
        }
        c->sent += (size_t)k;
    }
    return 0;
}

/* Read what has arrived (never past the expected reply); 0 when the reply is complete. */
static int pump_recv(struct conn *c) {
    if (g_udp)
        return recv_datagram(c);
    while (c->recvd < g_reply) {
        size_t left = g_reply - c->recvd;
        ssize_t k = recv(c->fd, c->rbuf + c->recvd, left < MAX_CHUNK ? left : MAX_CHUNK, 0);
        if (k == 0)
            die("server closed the connection (%zu of %zu reply bytes received)", c->recvd,
                g_reply);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            if (errno == EINTR)
                continue;
            die("recv: %s", strerror(errno));
        }
        c->recvd += (size_t)k;
    }
    return 0;
}

static void start_message(int ep, struct conn *c) {
    c->seq++;
    if (g_echo) /* every message differs: a stale or misplaced reply fails the check */
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
    fprintf(stderr, "usage: echo_client (-a HOST -p PORT | -u PATH) [-c CONNS] [-n SIZE] "
                    "[-r REPLY] [-w WARMUP_S] [-d DURATION_S] [-t STALL_S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = NULL, *path = NULL;
    int nconns = 10;
    double warmup = 0.2, duration = 1.0, stall = 10.0;
    long long size = 1024, reply = -1;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:u:c:n:r:w:d:t:D")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = optarg; break;
        case 'u': path = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'n': size = atoll(optarg); break;
        case 'r': reply = atoll(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 't': stall = atof(optarg); break;
        case 'D': g_udp = 1; break;
        default: usage();
        }
    }
    if ((!port && !path) || nconns < 1 || size < 1 || duration <= 0 || stall <= 0)
        usage();
    if (g_udp && (path || size > 65507))
        die("-D needs -a/-p and a datagram of at most 65507 bytes");
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the benchmark */
#endif
    if (reply < 0)
        reply = size;
    g_size = (size_t)size;
    g_reply = (size_t)reply;
    g_echo = g_reply == g_size;
    if (!g_echo && g_reply != strlen(ACK))
        die("reply must be the message size (echo) or %zu (bulk ack)", strlen(ACK));
    g_sbuf_len = g_echo ? g_size : (g_size < (1u << 20) ? g_size : (1u << 20));

    if (!g_echo && !g_udp)
        g_memfd = memfd_create("echo_client", 0); /* -1: send() instead */
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns)
        die("out of memory");
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->sbuf = malloc(g_sbuf_len);
        c->rbuf = malloc(g_reply);
        if (!c->sbuf || !c->rbuf)
            die("out of memory");
        for (size_t j = 0; j < g_sbuf_len; j++)
            c->sbuf[j] = (unsigned char)(j * 31 + i * 7 + (j >> 10));
        if (g_memfd >= 0 && i == 0 && write(g_memfd, c->sbuf, g_sbuf_len) != (ssize_t)g_sbuf_len) {
            close(g_memfd);
            g_memfd = -1;
        }
        c->fd = connect_to(host, port, path);
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
        int n = epoll_wait(ep, events, 64, g_udp ? 20 : 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        uint64_t now = now_ns();
        if (g_udp) { /* resend datagrams whose reply is 100 ms late */
            for (int i = 0; i < nconns; i++) {
                struct conn *c = &conns[i];
                if (c->recvd < g_reply && c->sent == g_size && now - c->t_sent > 100000000u) {
                    g_resent++;
                    c->sent = 0;
                    send_datagram(c);
                }
            }
        }
        if (n == 0) {
            if ((now - last_progress) / 1e9 > stall)
                die("no reply completed for %.1f s (%zu messages measured)", stall, count);
            continue;
        }
        for (int e = 0; e < n && !done; e++) {
            struct conn *c = events[e].data.ptr;
            uint32_t ev = events[e].events;
            if ((ev & EPOLLOUT) && !pump_send(c))
                set_events(ep, c, EPOLLIN);
            if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            if (pump_recv(c))
                continue;
            if (c->sent < g_size)
                die("reply complete before the message was sent (%zu of %zu bytes)", c->sent,
                    g_size);
            now = now_ns();
            if (g_echo ? memcmp(c->rbuf, c->sbuf, g_size) != 0
                       : memcmp(c->rbuf, ACK, g_reply) != 0)
                die("reply %llu on connection %d differs from what was expected",
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
           "mean_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f cpu=%.3f resent=%zu\n",
           nconns, g_size, g_reply, count, elapsed, rate, rate * (double)g_size / 1e6,
           count ? lat_sum / 1e3 / (double)count : 0.0,
           pct_us(lat, count, 0.50), pct_us(lat, count, 0.90), pct_us(lat, count, 0.99),
           pct_us(lat, count, 1.0), cpu, g_resent);
    fflush(stdout);
    for (int i = 0; i < nconns; i++)
        close(conns[i].fd);
    return 0;
}
