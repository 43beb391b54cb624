#include "bench/runner.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <random>
#include <thread>

#include "cli/client.h"
#include "common/host_port.h"

namespace ringkv::bench {

std::atomic<bool> g_stop{false};

namespace {

constexpr int64_t kNever = INT64_MAX;
constexpr int64_t kDrainNs = 10'000'000'000;  // how long in-flight requests may take at the end
constexpr size_t kReadBytes = 256 << 10;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t SecondsToNs(double s) { return static_cast<int64_t>(s * 1e9); }

std::string ErrnoText(int err) {
  std::string text = std::strerror(err);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// A connection made by Client::Connect with `security` (TLS handshake and
// `auth` done), handed over as a non-blocking fd and, with TLS, its SSL.
// Returns the fd, or -1 with *error set ("unauthenticated: wrong user or
// password", "TLS handshake with ... failed: ...").
int ConnectSecure(const std::string& address, const ClientSecurity& security, SSL** ssl,
                  std::string* error) {
  std::unique_ptr<Client> client;
  Status st = Client::Connect(address, &client, 5000, security);
  if (st.ok()) {
    int fd = -1;
    st = client->Release(&fd, ssl);
    if (st.ok()) return fd;
  }
  bool network = st.code() == Status::Code::kUnavailable || st.code() == Status::Code::kTimeout;
  *error = network ? st.message() : std::string(st.CodeName()) + ": " + st.message();
  return -1;
}

struct InFlight {
  int64_t sent_ns;
  Op op;
  bool counted;  // issued inside the measured window
};

struct Session;

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;  // owned; null without TLS
  // TLS: the last SSL_read wanted to write (WANT_WRITE); it is retried when
  // the socket is writable.
  bool read_wants_write = false;
  Session* session = nullptr;
  std::unique_ptr<ResponseParser> parser;
  std::string in;   // bytes read but not yet parsed (a partial response)
  std::string out;  // bytes queued but not yet written
  size_t out_pos = 0;
  std::deque<InFlight> inflight;  // request order; the last `unstamped` not yet written
  size_t unstamped = 0;
  bool dirty = false;     // in the worker's flush list
  bool want_out = false;  // registered for EPOLLOUT
};

struct Session {
  uint64_t index = 0;
  std::vector<Conn*> conns;
  std::mt19937_64 rng;
  int in_flight = 0;
  bool dead = false;
  uint32_t next_conn = 0;  // round-robin for pings with token routing
};

struct Shared {
  const RunSpec* spec = nullptr;
  int64_t start_ns = 0;
  int64_t measure_ns = 0;  // requests issued from here on count
  int64_t end_ns = kNever;
  std::atomic<uint64_t> issued{0};  // counted requests issued (with spec->ops)
};

class Worker {
 public:
  Worker(Shared* shared, uint64_t first_key, uint64_t end_key)
      : spec_(*shared->spec), shared_(shared), next_key_(first_key), end_key_(end_key) {}
  ~Worker() {
    for (auto& c : conns_) CloseConn(c.get());
    if (epfd_ >= 0) ::close(epfd_);
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void AddSession(uint64_t index) {
    auto s = std::make_unique<Session>();
    s->index = index;
    s->rng.seed(spec_.seed * 0x9e3779b97f4a7c15ULL + index);
    sessions_.push_back(std::move(s));
  }

  // Opens every session's sockets. False with *error set on the first failure.
  bool Connect(std::string* error) {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) {
      *error = "epoll_create1: " + ErrnoText(errno);
      return false;
    }
    const bool secure = spec_.security != nullptr && spec_.security->enabled();
    for (auto& s : sessions_) {
      std::vector<std::string> addresses;
      if (spec_.router != nullptr) {
        addresses = spec_.router->addresses();
      } else {
        addresses.push_back(spec_.addresses[s->index % spec_.addresses.size()]);
      }
      for (const std::string& address : addresses) {
        std::string why;
        SSL* ssl = nullptr;
        int fd = secure ? ConnectSecure(address, *spec_.security, &ssl, &why)
                        : ConnectTcp(address, 5000, &why);
        if (fd < 0) {
          *error = "cannot connect to ";
          error->append(address).append(": ").append(why);
          return false;
        }
        auto c = std::make_unique<Conn>();
        c->fd = fd;
        c->ssl = ssl;
        c->session = s.get();
        c->parser = spec_.target->NewParser();
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = c.get();
        if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) {
          *error = "epoll_ctl: " + ErrnoText(errno);
          CloseConn(c.get());
          return false;
        }
        s->conns.push_back(c.get());
        conns_.push_back(std::move(c));
      }
    }
    live_sessions_ = static_cast<int>(sessions_.size());
    return true;
  }

  void Run() {
    int64_t now = NowNs();
    for (auto& s : sessions_) Fill(s.get(), now);
    FlushAll();
    std::vector<epoll_event> events(256);
    int64_t drain_deadline = kNever;
    while (true) {
      bool stopping = Stopping(now);
      if (stopping && drain_deadline == kNever) drain_deadline = now + kDrainNs;
      if (live_sessions_ == 0 || (stopping && total_in_flight_ == 0) || now >= drain_deadline) {
        break;
      }
      int timeout_ms = 100;
      if (!stopping && shared_->end_ns != kNever) {
        timeout_ms =
            static_cast<int>(std::clamp<int64_t>((shared_->end_ns - now) / 1'000'000 + 1, 0, 100));
      }
      int n = ::epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), timeout_ms);
      if (n < 0 && errno != EINTR) {
        Count("epoll_wait: " + ErrnoText(errno), 1);
        break;
      }
      for (int i = 0; i < n; ++i) {
        auto* c = static_cast<Conn*>(events[i].data.ptr);
        if (c->fd < 0) continue;  // its session died earlier in this wake-up
        if (events[i].events & EPOLLOUT) MarkDirty(c);
        if ((events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) ||
            (c->read_wants_write && (events[i].events & EPOLLOUT))) {
          OnReadable(c);
        }
      }
      FlushAll();
      now = NowNs();
      progress_ops_.store(all_.ops, std::memory_order_relaxed);
      progress_errors_.store(error_count_, std::memory_order_relaxed);
    }
    finish_ns_ = now;
    progress_ops_.store(all_.ops, std::memory_order_relaxed);
    progress_errors_.store(error_count_, std::memory_order_relaxed);
    for (auto& c : conns_) CloseConn(c.get());
  }

  // Results, read after Run() has returned.
  OpStats all_, read_, write_;
  std::map<std::string, uint64_t> errors_;
  uint64_t error_count_ = 0;
  int sessions_lost_ = 0;
  int64_t last_completion_ns_ = 0;
  int64_t finish_ns_ = 0;
  // Read by the progress line while running.
  std::atomic<uint64_t> progress_ops_{0};
  std::atomic<uint64_t> progress_errors_{0};

 private:
  bool Stopping(int64_t now) const {
    if (quota_done_ || g_stop.load(std::memory_order_relaxed)) return true;
    if (spec_.load) return next_key_ >= end_key_;
    return now >= shared_->end_ns;
  }

  bool CanIssue(int64_t now) {
    if (Stopping(now)) return false;
    if (spec_.ops > 0 && !spec_.load && now >= shared_->measure_ns &&
        shared_->issued.fetch_add(1, std::memory_order_relaxed) >= spec_.ops) {
      quota_done_ = true;
      return false;
    }
    return true;
  }

  void Fill(Session* s, int64_t now) {
    while (!s->dead && s->in_flight < spec_.pipeline && Issue(s, now)) {
    }
  }

  bool Issue(Session* s, int64_t now) {
    if (!CanIssue(now)) return false;
    Op op = Op::kPing;
    std::string key;
    if (spec_.load) {
      op = Op::kWrite;
      key = KeyName(next_key_++);
    } else if (!spec_.ping) {
      key = KeyName(spec_.keys->Next(s->rng));
      op = std::uniform_int_distribution<int>(0, 99)(s->rng) < spec_.read_percent ? Op::kRead
                                                                                  : Op::kWrite;
    }
    Conn* c = s->conns[0];
    if (s->conns.size() > 1) {
      c = op == Op::kPing ? s->conns[s->next_conn++ % s->conns.size()]
                          : s->conns[spec_.router->NodeFor(key)];
    }
    spec_.target->EncodeRequest(op, key, spec_.value, &c->out);
    c->inflight.push_back({0, op, spec_.load || now >= shared_->measure_ns});
    c->unstamped++;
    MarkDirty(c);
    s->in_flight++;
    total_in_flight_++;
    return true;
  }

  void MarkDirty(Conn* c) {
    if (c->dirty) return;
    c->dirty = true;
    dirty_.push_back(c);
  }

  // One write per socket for everything queued in this wake-up.
  void FlushAll() {
    if (dirty_.empty()) return;
    int64_t now = NowNs();
    for (Conn* c : dirty_) {
      c->dirty = false;
      if (c->fd >= 0) Flush(c, now);
    }
    dirty_.clear();
  }

  void Flush(Conn* c, int64_t now) {
    for (size_t i = c->inflight.size() - c->unstamped; i < c->inflight.size(); ++i) {
      c->inflight[i].sent_ns = now;
    }
    c->unstamped = 0;
    if (c->ssl != nullptr) {
      if (!WriteTls(c)) return;
    } else if (c->out_pos < c->out.size()) {
      ssize_t n =
          ::send(c->fd, c->out.data() + c->out_pos, c->out.size() - c->out_pos, MSG_NOSIGNAL);
      if (n >= 0) {
        c->out_pos += static_cast<size_t>(n);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        Kill(c, "connection_reset");
        return;
      }
    }
    bool pending = c->out_pos < c->out.size();
    if (!pending) {
      c->out.clear();
      c->out_pos = 0;
    }
    bool want_out = pending || c->read_wants_write;
    if (want_out != c->want_out) {
      epoll_event ev{};
      ev.events = want_out ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
      ev.data.ptr = c;
      ::epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd, &ev);
      c->want_out = want_out;
    }
  }

  // Writes what the socket takes of c->out through TLS. With partial writes
  // on, each SSL_write_ex sends at least a record, so loop until it would
  // block. A write retried after WANT_WRITE passes the same bytes again, from
  // out_pos, only perhaps more of them and moved (Issue() appends to c->out):
  // SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows exactly that. False if the
  // session died.
  bool WriteTls(Conn* c) {
    while (c->out_pos < c->out.size()) {
      size_t n = 0;
      int rc = SSL_write_ex(c->ssl, c->out.data() + c->out_pos, c->out.size() - c->out_pos, &n);
      if (rc == 1) {
        c->out_pos += n;
        continue;
      }
      int err = SSL_get_error(c->ssl, rc);
      // WANT_READ: the write waits on a read (a post-handshake message);
      // OnReadable() marks the connection dirty again after reading.
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) return true;
      ERR_clear_error();  // SSL_get_error needs an empty queue before the next call
      Kill(c, "connection_reset");
      return false;
    }
    return true;
  }

  void OnReadable(Conn* c) {
    if (c->ssl != nullptr) {
      OnReadableTls(c);
      return;
    }
    ssize_t n = ::read(c->fd, read_buf_.get(), kReadBytes);
    int64_t now = NowNs();
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) Kill(c, "connection_reset");
      return;
    }
    if (!Consume(c, std::string_view(read_buf_.get(), static_cast<size_t>(n)), now)) return;
    if (n == 0) Kill(c, "connection_closed");
  }

  // Reads once, and again while OpenSSL holds decrypted or read-ahead bytes
  // (SSL_pending, SSL_has_pending), which no later epoll readiness would
  // announce.
  void OnReadableTls(Conn* c) {
    c->read_wants_write = false;
    for (;;) {
      size_t n = 0;
      int rc = SSL_read_ex(c->ssl, read_buf_.get(), kReadBytes, &n);
      int64_t now = NowNs();
      if (rc == 1) {
        if (!Consume(c, std::string_view(read_buf_.get(), n), now)) return;
        // More only if OpenSSL holds some (decrypted, or read ahead): what
        // is still in the socket makes epoll report it again. Reading on to
        // WANT_READ would cost a read() that fails with EAGAIN every time.
        if (SSL_pending(c->ssl) > 0 || SSL_has_pending(c->ssl) == 1) continue;
        break;
      }
      int err = SSL_get_error(c->ssl, rc);
      if (err == SSL_ERROR_WANT_READ) break;
      if (err == SSL_ERROR_WANT_WRITE) {
        c->read_wants_write = true;  // Flush() registers EPOLLOUT for it
        break;
      }
      ERR_clear_error();
      Kill(c, err == SSL_ERROR_ZERO_RETURN ? "connection_closed" : "connection_reset");
      return;
    }
    // A write that waited on this read, or a read that waits on a write.
    if (c->read_wants_write || c->out_pos < c->out.size()) MarkDirty(c);
  }

  // Parses `data`, just read, after any partial response already buffered,
  // and completes the requests it answers. False if the session died.
  bool Consume(Conn* c, std::string_view data, int64_t now) {
    // Parse straight from the read buffer unless a partial response is waiting.
    bool buffered = !c->in.empty();
    if (buffered) {
      c->in.append(data);
      data = c->in;
    }
    size_t pos = 0;
    while (true) {
      Reply r = c->parser->Parse(data.substr(pos));
      pos += r.consumed;
      if (r.kind == Reply::kNeedMore) break;
      if (r.kind == Reply::kBroken) {
        Kill(c, "bad_response");
        return false;
      }
      if (c->inflight.size() <= c->unstamped) {
        Kill(c, "unexpected_response");
        return false;
      }
      InFlight f = c->inflight.front();
      c->inflight.pop_front();
      Complete(c->session, f, r, now);
    }
    if (buffered) {
      c->in.erase(0, pos);
    } else {
      c->in.assign(data.substr(pos));
    }
    return true;
  }

  void Complete(Session* s, const InFlight& f, const Reply& r, int64_t now) {
    s->in_flight--;
    total_in_flight_--;
    if (f.counted && now <= shared_->end_ns) {
      auto us = static_cast<uint64_t>(std::max<int64_t>(0, now - f.sent_ns) / 1000);
      all_.latency_us.Record(us);
      all_.ops++;
      if (f.op != Op::kPing) {
        OpStats& per = f.op == Op::kRead ? read_ : write_;
        per.latency_us.Record(us);
        per.ops++;
      }
      if (r.kind == Reply::kError) Count(r.code, 1);
      last_completion_ns_ = now;
    }
    Fill(s, now);
  }

  void Count(const std::string& code, uint64_t n) {
    errors_[code] += n;
    error_count_ += n;
  }

  // The session's connections are closed; its requests in flight are errors.
  void Kill(Conn* failed, const char* why) {
    Session* s = failed->session;
    if (s->dead) return;
    s->dead = true;
    live_sessions_--;
    sessions_lost_++;
    Count(why, std::max(1, s->in_flight));
    total_in_flight_ -= s->in_flight;
    s->in_flight = 0;
    for (Conn* c : s->conns) {
      CloseConn(c);
      c->inflight.clear();
      c->unstamped = 0;
    }
  }

  // Without close_notify: the run is over for this connection either way.
  static void CloseConn(Conn* c) {
    if (c->ssl != nullptr) SSL_free(c->ssl);
    c->ssl = nullptr;
    if (c->fd >= 0) ::close(c->fd);
    c->fd = -1;
  }

  const RunSpec& spec_;
  Shared* shared_;
  uint64_t next_key_, end_key_;  // load runs: this worker's share of the keys
  int epfd_ = -1;
  std::vector<std::unique_ptr<Session>> sessions_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> dirty_;
  std::unique_ptr<char[]> read_buf_ = std::make_unique<char[]>(kReadBytes);
  int live_sessions_ = 0;
  int64_t total_in_flight_ = 0;
  bool quota_done_ = false;
};

bool SplitHostPort(std::string_view host_port, std::string* host, std::string* port) {
  HostPort hp;
  if (!ParseHostPort(host_port, &hp).ok()) return false;
  *host = hp.host;
  *port = std::to_string(hp.port);
  return true;
}

}  // namespace

int ConnectTcp(std::string_view host_port, int timeout_ms, std::string* error) {
  std::string host, port;
  if (!SplitHostPort(host_port, &host, &port)) {
    *error = "malformed address (want HOST:PORT)";
    return -1;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) {
    *error = gai == EAI_SYSTEM ? ErrnoText(errno) : ::gai_strerror(gai);
    return -1;
  }
  int fd = -1;
  int err = ECONNREFUSED;
  for (const addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int ready = ::poll(&p, 1, timeout_ms);
      if (ready <= 0) {
        err = ready == 0 ? ETIMEDOUT : errno;
      } else {
        socklen_t len = sizeof(err);
        if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        rc = err == 0 ? 0 : -1;
      }
    } else if (rc < 0) {
      err = errno;
    }
    if (rc < 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    *error = err == ETIMEDOUT ? "connect timed out" : ErrnoText(err);
    return -1;
  }
  int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

namespace {

struct CpuReading {
  int64_t at_ns = 0;
  double self_s = 0;      // this process, from getrusage (microseconds)
  double servers_s = -1;  // the cpu_pids together; negative if one is gone
};

CpuReading ReadCpu(const std::vector<int>& pids) {
  CpuReading r;
  r.at_ns = NowNs();
  rusage self{};
  getrusage(RUSAGE_SELF, &self);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  };
  r.self_s = secs(self.ru_utime) + secs(self.ru_stime);
  if (pids.empty()) return r;
  double sum = 0;
  for (int pid : pids) {
    double s = ProcessCpuSeconds(pid);
    if (s < 0) return r;
    sum += s;
  }
  r.servers_s = sum;
  return r;
}

}  // namespace

double ProcessCpuSeconds(int pid) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return -1;
  char buf[1024];
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may hold spaces; the
  // fields after its last ')' are fixed: state is field 3, utime 14, stime 15.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return -1;
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
                  &stime) != 2) {
    return -1;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

bool RunBenchmark(const RunSpec& spec, RunResult* result) {
  int threads = std::max(1, std::min(spec.threads, spec.sessions));
  Shared shared;
  shared.spec = &spec;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int w = 0; w < threads; ++w) {
    uint64_t lo = spec.key_count * w / threads;
    uint64_t hi = spec.key_count * (w + 1) / threads;
    workers.push_back(std::make_unique<Worker>(&shared, lo, hi));
  }
  for (int i = 0; i < spec.sessions; ++i) workers[i % threads]->AddSession(i);
  for (auto& w : workers) {
    if (!w->Connect(&result->fatal)) return false;
  }

  shared.start_ns = NowNs();
  shared.measure_ns = spec.load ? shared.start_ns : shared.start_ns + SecondsToNs(spec.warmup_s);
  if (!spec.load && spec.ops == 0) shared.end_ns = shared.measure_ns + SecondsToNs(spec.duration_s);
  std::atomic<int> running{threads};
  std::vector<std::thread> pool;
  pool.reserve(workers.size());
  for (auto& w : workers) {
    pool.emplace_back([&running, worker = w.get()] {
      worker->Run();
      running.fetch_sub(1);
    });
  }

  // Progress lines while the workers run, and the CPU readings at the two
  // ends of the measured window (slept to, not polled: the window is the
  // same one the ops are counted in, give or take a wake-up).
  int64_t next_progress =
      spec.progress_s > 0 ? shared.start_ns + SecondsToNs(spec.progress_s) : kNever;
  uint64_t last_ops = 0;
  int64_t last_ns = shared.start_ns;
  CpuReading cpu_start, cpu_end;
  bool started = false, ended = false;
  while (running.load() > 0) {
    int64_t now = NowNs();
    int64_t next_event = now + 50'000'000;
    if (!started) next_event = std::min(next_event, shared.measure_ns);
    if (started && !ended && shared.end_ns != kNever)
      next_event = std::min(next_event, shared.end_ns);
    if (next_event > now) std::this_thread::sleep_for(std::chrono::nanoseconds(next_event - now));
    now = NowNs();
    if (!started && now >= shared.measure_ns) {
      cpu_start = ReadCpu(spec.cpu_pids);
      started = true;
    }
    if (started && !ended && shared.end_ns != kNever && now >= shared.end_ns) {
      cpu_end = ReadCpu(spec.cpu_pids);
      ended = true;
    }
    if (now < next_progress) continue;
    uint64_t ops = 0, errors = 0;
    for (auto& w : workers) {
      ops += w->progress_ops_.load(std::memory_order_relaxed);
      errors += w->progress_errors_.load(std::memory_order_relaxed);
    }
    double dt = static_cast<double>(now - last_ns) / 1e9;
    std::fprintf(stderr,
                 "kvbench: %s %.0f s: %llu ops, %.0f ops/s over the last %.0f s, %llu errors\n",
                 spec.label.c_str(), static_cast<double>(now - shared.start_ns) / 1e9,
                 static_cast<unsigned long long>(ops),
                 dt > 0 ? static_cast<double>(ops - last_ops) / dt : 0.0, dt,
                 static_cast<unsigned long long>(errors));
    last_ops = ops;
    last_ns = now;
    next_progress = now + SecondsToNs(spec.progress_s);
  }
  for (auto& t : pool) t.join();
  if (!started) cpu_start = ReadCpu(spec.cpu_pids);  // a run shorter than a wake-up
  if (!ended) cpu_end = ReadCpu(spec.cpu_pids);
  result->cpu_window_s = static_cast<double>(cpu_end.at_ns - cpu_start.at_ns) / 1e9;
  result->client_cpu_s = cpu_end.self_s - cpu_start.self_s;
  if (cpu_start.servers_s >= 0 && cpu_end.servers_s >= 0)
    result->server_cpu_s = cpu_end.servers_s - cpu_start.servers_s;

  int64_t last_completion = shared.measure_ns;
  int64_t finish = shared.measure_ns;
  for (auto& w : workers) {
    result->all.latency_us.Merge(w->all_.latency_us);
    result->read.latency_us.Merge(w->read_.latency_us);
    result->write.latency_us.Merge(w->write_.latency_us);
    result->all.ops += w->all_.ops;
    result->read.ops += w->read_.ops;
    result->write.ops += w->write_.ops;
    result->error_count += w->error_count_;
    result->sessions_lost += w->sessions_lost_;
    for (const auto& [code, n] : w->errors_) result->errors[code] += n;
    last_completion = std::max(last_completion, w->last_completion_ns_);
    finish = std::max(finish, w->finish_ns_);
  }
  int64_t window_end = shared.end_ns == kNever ? last_completion : std::min(shared.end_ns, finish);
  result->seconds = static_cast<double>(std::max<int64_t>(0, window_end - shared.measure_ns)) / 1e9;
  result->interrupted = g_stop.load();
  return true;
}

}  // namespace ringkv::bench
