/*
 * netdelay.c - delays packets by a mean and a jitter, for scripts/netlab.
 *
 * usage: netdelay QUEUE DELAY_MS JITTER_MS SECONDS
 *
 * netem (tc's delay) is not in every kernel; NFQUEUE is. An iptables rule
 * (`-j NFQUEUE --queue-num QUEUE --queue-bypass`) hands each matching packet
 * to this program, which gives it back (NF_ACCEPT) DELAY_MS +- JITTER_MS
 * later, drawn uniformly per packet, as `netem delay D J` does (packets may
 * overtake each other, as with netem). After SECONDS it lets every held
 * packet go and exits; `--queue-bypass` then passes packets undelayed, so a
 * fault outlives neither this process nor its time bound. A full queue fails
 * open (the packet passes) rather than dropping.
 *
 * It speaks nfnetlink_queue over a raw netlink socket: the kernel's uapi
 * headers are all it needs (no libnetfilter_queue).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_MAXLEN 65536
#define MAX_HELD 65536

/* A packet held until its release time. */
typedef struct held {
    int64_t release_ms;
    uint32_t id;
} held_t;

static held_t heap[MAX_HELD]; /* a min-heap on release_ms */
static int nheld;
static volatile sig_atomic_t stopping;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void heap_push(held_t h)
{
    int i = nheld++;
    while (i > 0 && heap[(i - 1) / 2].release_ms > h.release_ms) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = h;
}

static held_t heap_pop(void)
{
    held_t top = heap[0], last = heap[--nheld];
    int i = 0;

    for (;;) {
        int c = 2 * i + 1;
        if (c >= nheld)
            break;
        if (c + 1 < nheld && heap[c + 1].release_ms < heap[c].release_ms)
            c++;
        if (heap[c].release_ms >= last.release_ms)
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (nheld)
        heap[i] = last;
    return top;
}

/* Appends attribute @p type with @p len bytes to the message in @p buf. */
static void put_attr(struct nlmsghdr *nh, uint16_t type, const void *data, uint16_t len)
{
    struct nlattr *a = (struct nlattr *)((char *)nh + NLMSG_ALIGN(nh->nlmsg_len));

    a->nla_type = type;
    a->nla_len = (uint16_t)(NLA_HDRLEN + len);
    memcpy((char *)a + NLA_HDRLEN, data, len);
    nh->nlmsg_len = NLMSG_ALIGN(nh->nlmsg_len) + NLA_ALIGN(a->nla_len);
}

/* Starts a queue message of @p type for queue @p queue in @p buf. */
static struct nlmsghdr *start_msg(char *buf, uint16_t type, uint16_t queue, uint16_t flags)
{
    struct nlmsghdr *nh = (struct nlmsghdr *)buf;
    struct nfgenmsg *g;

    memset(buf, 0, 256);
    nh->nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
    nh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_QUEUE << 8) | type);
    nh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
    g = NLMSG_DATA(nh);
    g->nfgen_family = AF_UNSPEC;
    g->version = NFNETLINK_V0;
    g->res_id = htons(queue);
    return nh;
}

static int send_msg(int fd, struct nlmsghdr *nh)
{
    struct sockaddr_nl to = {.nl_family = AF_NETLINK};
    return sendto(fd, nh, nh->nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0 ? -1 : 0;
}

/* Sends a configuration message and checks the kernel's acknowledgement. */
static int configure(int fd, uint16_t queue, uint16_t attr, const void *data, uint16_t len)
{
    char buf[256], reply[1024];
    struct nlmsghdr *nh = start_msg(buf, NFQNL_MSG_CONFIG, queue, NLM_F_ACK);
    ssize_t n;

    put_attr(nh, attr, data, len);
    if (send_msg(fd, nh))
        return -1;
    n = recv(fd, reply, sizeof(reply), 0);
    if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)))
        return -1;
    nh = (struct nlmsghdr *)reply;
    if (nh->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(nh);
        if (e->error) {
            errno = -e->error;
            return -1;
        }
    }
    return 0;
}

static void verdict(int fd, uint16_t queue, uint32_t id)
{
    char buf[256];
    struct nlmsghdr *nh = start_msg(buf, NFQNL_MSG_VERDICT, queue, 0);
    struct nfqnl_msg_verdict_hdr v = {htonl(NF_ACCEPT), htonl(id)};

    put_attr(nh, NFQA_VERDICT_HDR, &v, sizeof(v));
    if (send_msg(fd, nh))
        perror("netdelay: verdict");
}

/* Holds every packet of the netlink datagram @p buf for its delay. */
static void take_packets(char *buf, ssize_t len, int delay, int jitter)
{
    for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)len);
         nh = NLMSG_NEXT(nh, len)) {
        size_t off = NLMSG_ALIGN(sizeof(struct nfgenmsg));
        char *attrs = (char *)NLMSG_DATA(nh);

        if ((nh->nlmsg_type & 0xff) != NFQNL_MSG_PACKET)
            continue;
        while (off + NLA_HDRLEN <= NLMSG_PAYLOAD(nh, 0)) {
            struct nlattr *a = (struct nlattr *)(attrs + off);
            if (a->nla_len < NLA_HDRLEN)
                break;
            if ((a->nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR && nheld < MAX_HELD) {
                struct nfqnl_msg_packet_hdr *ph = (void *)((char *)a + NLA_HDRLEN);
                held_t h = {now_ms() + delay - jitter + rand() % (2 * jitter + 1),
                            ntohl(ph->packet_id)};
                heap_push(h);
            }
            off += NLA_ALIGN(a->nla_len);
        }
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    static char buf[1 << 17];
    struct sockaddr_nl self = {.nl_family = AF_NETLINK};
    uint16_t queue;
    int delay, jitter, fd, rcvbuf = 8 << 20;
    int64_t end;
    struct {
        uint8_t command, pad;
        uint16_t pf;
    } cmd = {NFQNL_CFG_CMD_BIND, 0, 0};
    struct nfqnl_msg_config_params params = {htonl(128), NFQNL_COPY_PACKET};
    uint32_t maxlen = htonl(QUEUE_MAXLEN), flags = htonl(NFQA_CFG_F_FAIL_OPEN);

    if (argc != 5) {
        fprintf(stderr, "usage: netdelay QUEUE DELAY_MS JITTER_MS SECONDS\n");
        return 64;
    }
    queue = (uint16_t)atoi(argv[1]);
    delay = atoi(argv[2]);
    jitter = atoi(argv[3]);
    end = now_ms() + (int64_t)atoi(argv[4]) * 1000;
    if (delay < 0 || jitter < 0 || jitter > delay) {
        fprintf(stderr, "netdelay: need 0 <= JITTER_MS <= DELAY_MS\n");
        return 64;
    }
    srand((unsigned)getpid());
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);
    if (fd < 0 || bind(fd, (struct sockaddr *)&self, sizeof(self))) {
        perror("netdelay: netlink socket");
        return 69;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
    if (configure(fd, queue, NFQA_CFG_CMD, &cmd, sizeof(cmd)) ||
        configure(fd, queue, NFQA_CFG_PARAMS, &params, sizeof(params)) ||
        configure(fd, queue, NFQA_CFG_QUEUE_MAXLEN, &maxlen, sizeof(maxlen))) {
        perror("netdelay: binding the queue");
        return 69;
    }
    /* FAIL_OPEN needs a mask too: the attribute pair is flags + mask. */
    {
        char m[256];
        struct nlmsghdr *nh = start_msg(m, NFQNL_MSG_CONFIG, queue, 0);
        put_attr(nh, NFQA_CFG_FLAGS, &flags, sizeof(flags));
        put_attr(nh, NFQA_CFG_MASK, &flags, sizeof(flags));
        send_msg(fd, nh);
    }
    printf("ready\n"); /* scripts/netlab adds the rule that feeds the queue now */
    fflush(stdout);
    while (!stopping && now_ms() < end) {
        int timeout = nheld ? (int)(heap[0].release_ms - now_ms()) : 100;
        struct pollfd p = {fd, POLLIN, 0};

        if (timeout > 100)
            timeout = 100;
        if (poll(&p, 1, timeout < 0 ? 0 : timeout) > 0) {
            ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0)
                take_packets(buf, n, delay, jitter);
        }
        while (nheld && heap[0].release_ms <= now_ms())
            verdict(fd, queue, heap_pop().id);
    }
    while (nheld) /* the time is up: let everything go */
        verdict(fd, queue, heap_pop().id);
    close(fd);
    return 0;
}
