// httpload: plain HTTP/1.1 keep-alive GETs over N connections, one request in flight on each,
// for `bench.py --only lua` (wsload speaks WebSocket only). One thread, epoll, non-blocking
// sockets, no allocation per request: the client stays cheap next to the proxy it loads.
// bench.py compiles it at run time (cc -O2) into BUILD/bench/httpload.
//
//   httpload --url http://HOST:PORT/PATH --connections N [--header "Name: value"]...
//            [--duration SEC] [--warmup SEC] [--rate REQ_PER_S] [--requests TOTAL]
//
// Prints JSON lines as wsload does: {"event": "start"} when the measured window opens (after
// the warm-up), then {"mode": "http", "requests": ..., "requests_per_s": ..., "p50_us": ...,
// "p99_us": ..., "errors": ...} when it closes. --rate spreads requests evenly over time (the
// latency counts from when a request was due); --requests sends exactly that many and ends
// (no warm-up, no duration: for callgrind runs). Every response must be a 200 with a
// Content-Length body and keep the connection open, or the run fails.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kMaxHeaders = 16, kBuf = 16384 };

struct conn {
  int fd;
  int busy;          // a request is in flight
  double due;        // when the request in flight was due (rate mode) or sent
  size_t sent;       // bytes of the request written
  size_t have;       // bytes of the response read
  char in[kBuf];
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char* what) {
  fprintf(stderr, "httpload: %s: %s\n", what, errno ? strerror(errno) : "failed");
  exit(1);
}

static char request[4096];
static size_t request_len;

static int cmp_u32(const void* a, const void* b) {
  const uint32_t x = *(const uint32_t*)a, y = *(const uint32_t*)b;
  return x < y ? -1 : x > y;
}

// The end of a complete response in c->in (its length), 0 if incomplete, -1 if unusable.
static long response_end(struct conn* c) {
  char* head_end = memmem(c->in, c->have, "\r\n\r\n", 4);
  if (!head_end) return c->have >= kBuf ? -1 : 0;
  *head_end = '\0';  // restored below: the scan stays within the head
  long status = strncmp(c->in, "HTTP/1.1 200 ", 13) == 0 ? 200 : -1;
  long length = -1;
  int close = 0;
  for (char* line = strstr(c->in, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, "content-length:", 15) == 0) length = strtol(line + 17, NULL, 10);
    if (strncasecmp(line + 2, "connection:", 11) == 0 && strcasestr(line + 13, "close")) close = 1;
  }
  *head_end = '\r';
  if (status != 200 || length < 0 || close) return -1;
  const long total = (head_end - c->in) + 4 + length;
  if (total > kBuf) return -1;
  return (size_t)total <= c->have ? total : 0;
}

int main(int argc, char** argv) {
  const char* url = NULL;
  const char* headers[kMaxHeaders];
  int nheaders = 0, connections = 0;
  double duration = 5, warmup = 1, rate = 0;
  long total = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--url")) url = argv[i + 1];
    else if (!strcmp(argv[i], "--connections")) connections = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--duration")) duration = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--warmup")) warmup = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--requests")) total = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--header") && nheaders < kMaxHeaders) headers[nheaders++] = argv[i + 1];
    else { fprintf(stderr, "httpload: unknown option %s\n", argv[i]); return 2; }
  }
  char host[256];
  int port = 0;
  char path[1024] = "/";
  if (!url || connections <= 0 ||
      sscanf(url, "http://%255[^:]:%d%1023s", host, &port, path) < 2) {
    fprintf(stderr, "usage: httpload --url http://HOST:PORT/PATH --connections N [--header H]... "
                    "[--duration S] [--warmup S] [--rate R] [--requests N]\n");
    return 2;
  }
  int n = snprintf(request, sizeof request,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: httpload\r\nAccept: */*\r\n",
                   path, host, port);
  for (int i = 0; i < nheaders; ++i) n += snprintf(request + n, sizeof request - n, "%s\r\n", headers[i]);
  n += snprintf(request + n, sizeof request - n, "\r\n");
  request_len = (size_t)n;

  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) { errno = 0; die("--url needs an IPv4 address"); }
  const int ep = epoll_create1(0);
  struct conn* conns = calloc((size_t)connections, sizeof *conns);
  for (int i = 0; i < connections; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr*)&addr, sizeof addr) != 0) die("connect");
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int nonblocking = 1;
    if (ioctl(fd, FIONBIO, &nonblocking) != 0) die("FIONBIO");
    conns[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
  }

  const int counted_run = total > 0;
  const double t0 = now_s();
  const double open_at = counted_run ? t0 : t0 + warmup;
  const double end_at = counted_run ? 1e300 : open_at + duration;
  int window_open = counted_run;
  if (counted_run) { printf("{\"event\": \"start\"}\n"); fflush(stdout); }
  size_t cap = 1 << 20, count = 0;
  uint32_t* lat = malloc(cap * sizeof *lat);
  long issued = 0, completed = 0, errors = 0;
  int idle_top = 0;
  int* idle = malloc((size_t)connections * sizeof *idle);
  for (int i = 0; i < connections; ++i) idle[idle_top++] = connections - 1 - i;
  double window_start = open_at;
  struct epoll_event events[256];

  for (;;) {
    const double now = now_s();
    if (!window_open && now >= open_at) {
      window_open = 1;
      window_start = now;
      count = 0;
      printf("{\"event\": \"start\"}\n");
      fflush(stdout);
    }
    if (now >= end_at || (counted_run && completed >= total)) break;
    // Issue what is due on idle connections.
    long want;
    if (counted_run) want = total - issued;
    else if (rate > 0) want = (long)((now - t0) * rate) - issued;
    else want = idle_top;
    while (want > 0 && idle_top > 0) {
      struct conn* c = &conns[idle[--idle_top]];
      c->busy = 1;
      c->due = rate > 0 && !counted_run ? t0 + (double)issued / rate : now;
      c->have = 0;
      const ssize_t w = send(c->fd, request, request_len, MSG_NOSIGNAL);
      if (w < 0 && errno != EAGAIN) die("send");
      c->sent = w < 0 ? 0 : (size_t)w;
      ++issued;
      --want;
    }
    // In rate mode, requests due while every connection is busy go out when one frees up
    // (their latency counts from when they were due).
    int timeout = 100;
    if (rate > 0 && !counted_run) {
      const double next = t0 + (double)(issued + 1) / rate;
      const double wait_ms = (next - now_s()) * 1e3;
      timeout = idle_top > 0 ? (wait_ms <= 0 ? 0 : (int)wait_ms) : 100;
    }
    const int ready = epoll_wait(ep, events, 256, timeout);
    if (ready < 0 && errno != EINTR) die("epoll_wait");
    for (int e = 0; e < ready; ++e) {
      struct conn* c = &conns[events[e].data.u32];
      if (!c->busy) {
        if (events[e].events & (EPOLLHUP | EPOLLERR)) { errno = 0; die("the server closed a connection"); }
        continue;
      }
      if (c->sent < request_len) {
        const ssize_t w = send(c->fd, request + c->sent, request_len - c->sent, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) die("send");
        if (w > 0) c->sent += (size_t)w;
      }
      for (;;) {
        const ssize_t r = recv(c->fd, c->in + c->have, kBuf - c->have, 0);
        if (r == 0) { errno = 0; die("the server closed a connection"); }
        if (r < 0) {
          if (errno == EAGAIN) break;
          die("recv");
        }
        c->have += (size_t)r;
        const long end = response_end(c);
        if (end < 0) {
          ++errors;
          c->in[c->have < 200 ? c->have : 200] = '\0';
          fprintf(stderr, "httpload: unexpected response: %s\n", c->in);
          return 1;
        }
        if (end == 0) continue;
        const double done = now_s();
        if (window_open && done < end_at) {
          if (count == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
          lat[count++] = (uint32_t)((done - c->due) * 1e6);
        }
        ++completed;
        c->busy = 0;
        c->have = 0;
        idle[idle_top++] = (int)(c - conns);
        break;
      }
    }
  }
  const double window = (counted_run ? now_s() : end_at) - window_start;
  qsort(lat, count, sizeof *lat, cmp_u32);
  const uint32_t p50 = count ? lat[count / 2] : 0, p99 = count ? lat[(size_t)(count * 0.99)] : 0;
  printf("{\"mode\": \"http\", \"requests\": %zu, \"requests_per_s\": %.1f, \"p50_us\": %u, "
         "\"p99_us\": %u, \"errors\": %ld, \"connections\": %d}\n",
         count, window > 0 ? (double)count / window : 0.0, p50, p99, errors, connections);
  fflush(stdout);
  for (int i = 0; i < connections; ++i) close(conns[i].fd);
  return 0;
}
