/* LD_PRELOAD shim for scripts/bench/bucket.sh: every connection the S3 server accepts gets
 * TCP_NODELAY. s3s-fs 0.14.1 does not set it; it writes a response's headers and then its body,
 * and with Nagle's algorithm the body then waits for the client's delayed ACK (40 ms on Linux):
 * every small GET took ~40 ms and a run over 2,000 small objects ~15x as long as with the option.
 * Servers in production set it; the bench measures corpusgate, not that stall.
 * Built by the script: cc -shared -fPIC -O2 -o target/bench-nodelay.so scripts/bench/nodelay.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int nodelay(int fd) {
  int one = 1;
  if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on non-TCP: fine */
  return fd;
}

int accept4(int s, struct sockaddr *addr, socklen_t *len, int flags) {
  static int (*real)(int, struct sockaddr *, socklen_t *, int);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
  return nodelay(real(s, addr, len, flags));
}

int accept(int s, struct sockaddr *addr, socklen_t *len) {
  static int (*real)(int, struct sockaddr *, socklen_t *);
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  return nodelay(real(s, addr, len));
}
