// End-to-end tests of kvd's HTTP metrics endpoint (--metrics-listen): GET
// /metrics parsed strictly as the Prometheus text exposition format (0.0.4),
// GET /health, the error statuses, and the flags' error handling.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"

namespace ringkv::itest {
namespace {

using Clock = std::chrono::steady_clock;

// The deadline of one HTTP exchange.
constexpr auto kHttpWait = std::chrono::seconds(10);

// ---- A minimal HTTP client over a raw socket ----

struct HttpReply {
  bool complete = false;  // a whole response, then end of stream
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string raw;
  std::string error;  // why it is not complete
};

HttpReply ParseReply(std::string raw) {
  HttpReply reply;
  reply.raw = std::move(raw);
  const size_t end = reply.raw.find("\r\n\r\n");
  if (end == std::string::npos || !reply.raw.starts_with("HTTP/1.1 ")) {
    reply.error = "not an HTTP/1.1 response: '" + reply.raw.substr(0, 200) + "'";
    return reply;
  }
  reply.status = std::atoi(reply.raw.c_str() + 9);
  for (size_t at = reply.raw.find("\r\n") + 2; at < end + 2;) {
    const size_t eol = reply.raw.find("\r\n", at);
    const std::string line = reply.raw.substr(at, eol - at);
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      reply.error = "bad header line '" + line + "'";
      return reply;
    }
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t value = line.find_first_not_of(' ', colon + 1);
    reply.headers[name] = value == std::string::npos ? "" : line.substr(value);
    at = eol + 2;
  }
  reply.body = reply.raw.substr(end + 4);
  reply.complete = true;
  return reply;
}

// Sends `request` to "127.0.0.1:PORT" on a new connection and reads the
// response to end of stream, within kHttpWait.
HttpReply Exchange(const std::string& address, std::string_view request) {
  HttpReply failed;
  testutil::LoopbackConn conn(testutil::PortOf(address), kHttpWait);
  std::string raw;
  if (!conn.connected()) {
    failed.error = std::string("connect: ") + std::strerror(errno);
  } else if (!conn.SendAll(request)) {
    failed.error = std::string("send: ") + std::strerror(errno);
  } else if (!conn.ReadToEnd(&raw)) {
    failed.error = "no end of response within the deadline (or a reset)";
  }
  if (!failed.error.empty()) {
    failed.raw = std::move(raw);
    return failed;
  }
  return ParseReply(std::move(raw));
}

HttpReply Http(const std::string& address, const std::string& method, const std::string& path) {
  return Exchange(address, method + " " + path + " HTTP/1.1\r\nHost: " + address +
                               "\r\nUser-Agent: ringkv-test\r\nAccept: */*\r\n\r\n");
}

// ---- A strict parser of the Prometheus text exposition format 0.0.4 ----

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::map<std::string, std::string> types;  // family -> counter, gauge, ...
  std::vector<Sample> samples;

  // The value of the one sample `name{labels}`, if there is one.
  std::optional<double> Value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return std::nullopt;
  }
};

bool IsMetricName(std::string_view s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != ':') return false;
  }
  return true;
}

bool IsLabelName(std::string_view s) {
  return IsMetricName(s) && s.find(':') == std::string_view::npos;
}

bool ParseValue(const std::string& text, double* out) {
  if (text == "+Inf" || text == "Inf") {
    *out = HUGE_VAL;
    return true;
  }
  if (text == "-Inf") {
    *out = -HUGE_VAL;
    return true;
  }
  if (text == "NaN") {
    *out = std::nan("");
    return true;
  }
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return false;
  char* end = nullptr;
  *out = std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

// Parses `{a="x",b="y"}` (the braces included) from the front of *rest.
bool ParseLabels(std::string_view* rest, std::map<std::string, std::string>* labels) {
  rest->remove_prefix(1);  // '{'
  while (!rest->starts_with('}')) {
    const size_t eq = rest->find('=');
    if (eq == std::string_view::npos) return false;
    const std::string name(rest->substr(0, eq));
    if (!IsLabelName(name) || labels->count(name)) return false;
    rest->remove_prefix(eq + 1);
    if (!rest->starts_with('"')) return false;
    rest->remove_prefix(1);
    std::string value;
    for (;;) {
      if (rest->empty()) return false;
      const char c = rest->front();
      rest->remove_prefix(1);
      if (c == '"') break;
      if (c == '\n') return false;
      if (c == '\\') {
        if (rest->empty()) return false;
        const char e = rest->front();
        rest->remove_prefix(1);
        if (e == 'n') {
          value += '\n';
        } else if (e == '\\' || e == '"') {
          value += e;
        } else {
          return false;
        }
      } else {
        value += c;
      }
    }
    (*labels)[name] = value;
    if (rest->starts_with(',')) rest->remove_prefix(1);
  }
  rest->remove_prefix(1);  // '}'
  return true;
}

// The family a sample called `name` belongs to, given the TYPEs so far.
std::string FamilyOf(const std::string& name, const std::map<std::string, std::string>& types) {
  if (types.count(name)) return name;
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (!name.ends_with(suffix)) continue;
    const std::string base = name.substr(0, name.size() - suffix.size());
    auto it = types.find(base);
    if (it == types.end()) continue;
    if (it->second == "histogram" || (it->second == "summary" && suffix != "_bucket")) return base;
  }
  return "";
}

// Checks every histogram: per label set, `le` bounds increasing and ending in
// +Inf, cumulative counts non-decreasing, the +Inf bucket equal to _count,
// and a _sum.
::testing::AssertionResult CheckHistograms(const Exposition& e) {
  for (const auto& [family, type] : e.types) {
    if (type != "histogram") continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
    for (const Sample& s : e.samples) {
      if (s.name != family + "_bucket") continue;
      auto labels = s.labels;
      auto le = labels.find("le");
      double bound = 0;
      if (le == labels.end() || !ParseValue(le->second, &bound)) {
        return ::testing::AssertionFailure() << family << "_bucket without a valid le label";
      }
      labels.erase(le);
      buckets[labels].emplace_back(bound, s.value);
    }
    if (buckets.empty()) return ::testing::AssertionFailure() << family << " has no buckets";
    for (const auto& [labels, series] : buckets) {
      for (size_t i = 1; i < series.size(); ++i) {
        if (!(series[i].first > series[i - 1].first) || series[i].second < series[i - 1].second) {
          return ::testing::AssertionFailure()
                 << family << ": bucket le=" << series[i].first << " (" << series[i].second
                 << ") does not follow le=" << series[i - 1].first << " (" << series[i - 1].second
                 << ")";
        }
      }
      if (!std::isinf(series.back().first)) {
        return ::testing::AssertionFailure() << family << ": the last bucket is not le=\"+Inf\"";
      }
      const auto count = e.Value(family + "_count", labels);
      if (!count || *count != series.back().second) {
        return ::testing::AssertionFailure()
               << family << ": +Inf bucket " << series.back().second << " differs from _count";
      }
      if (!e.Value(family + "_sum", labels)) {
        return ::testing::AssertionFailure() << family << ": no _sum";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// Parses `text` strictly: every line is a HELP or TYPE comment or a sample
// `name{labels} value` / `name value`; every sample's family is TYPEd before
// it and its samples form one group; no series appears twice; counters end
// in _total; histograms are consistent.
::testing::AssertionResult ParseExposition(const std::string& text, Exposition* out) {
  if (text.empty() || text.back() != '\n') {
    return ::testing::AssertionFailure() << "the exposition does not end with a newline";
  }
  std::set<std::string> helps, finished_families, series;
  std::string current_family;
  std::istringstream in(text);
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    auto fail = [&] {
      return ::testing::AssertionFailure() << "line " << number << " '" << line << "': ";
    };
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      const std::string rest = line.substr(7);
      const size_t sp = rest.find(' ');
      const std::string name = rest.substr(0, sp);
      if (sp == std::string::npos || !IsMetricName(name)) return fail() << "bad comment";
      if (line[2] == 'H') {
        if (!helps.insert(name).second) return fail() << "second HELP";
        continue;
      }
      const std::string type = rest.substr(sp + 1);
      if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
          type != "untyped") {
        return fail() << "unknown type";
      }
      if (out->types.count(name)) return fail() << "second TYPE";
      if (finished_families.count(name) || current_family == name) {
        return fail() << "TYPE after the family's samples";
      }
      out->types[name] = type;
      if (type == "counter" && !name.ends_with("_total")) return fail() << "counter not _total";
      continue;
    }
    if (line.starts_with("#")) continue;  // another comment
    std::string_view rest = line;
    const size_t name_end = rest.find_first_of("{ ");
    if (name_end == std::string_view::npos) return fail() << "no value";
    Sample sample;
    sample.name = std::string(rest.substr(0, name_end));
    if (!IsMetricName(sample.name)) return fail() << "bad metric name";
    rest.remove_prefix(name_end);
    if (rest.starts_with('{') && !ParseLabels(&rest, &sample.labels)) return fail() << "bad labels";
    if (!rest.starts_with(' ')) return fail() << "no space before the value";
    rest.remove_prefix(1);
    if (!ParseValue(std::string(rest), &sample.value)) return fail() << "bad value";
    const std::string family = FamilyOf(sample.name, out->types);
    if (family.empty()) return fail() << "sample without a TYPE line before it";
    if (family != current_family) {
      if (finished_families.count(family)) return fail() << "family's samples are not grouped";
      if (!current_family.empty()) finished_families.insert(current_family);
      current_family = family;
    }
    std::string key = sample.name;
    for (const auto& [k, v] : sample.labels) key += "|" + k + "=" + v;
    if (!series.insert(key).second) return fail() << "duplicate series";
    const std::string& type = out->types[family];
    if (type == "counter" || type == "gauge" || type == "untyped") {
      if (sample.name != family) return fail() << "sample name differs from its family";
    }
    if (type == "histogram" && sample.name == family) return fail() << "bare histogram sample";
    if (type == "counter" && sample.value < 0) return fail() << "negative counter";
    out->samples.push_back(std::move(sample));
  }
  return CheckHistograms(*out);
}

// ---- Tests ----

// The parser is strict enough to make the checks below mean something.
TEST(ExpositionParserTest, AcceptsValidAndRejectsViolations) {
  const std::string valid =
      "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\\\\"} 3\n"
      "# TYPE g gauge\ng -1.5e-3\n"
      "# TYPE h_seconds histogram\nh_seconds_bucket{le=\"0.1\"} 1\n"
      "h_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 0.3\nh_seconds_count 2\n";
  Exposition ok;
  ASSERT_TRUE(ParseExposition(valid, &ok));
  EXPECT_EQ(ok.Value("a_total", {{"x", "1"}, {"y", "q\"\\"}}), 3);
  EXPECT_EQ(ok.Value("g"), -1.5e-3);

  for (const char* bad : {
           "a_total 1\n",                                              // no TYPE
           "# TYPE a counter\na 1\n",                                  // counter not _total
           "# TYPE g gauge\ng 1",                                      // no final newline
           "# TYPE g gauge\n\ng 1\n",                                  // blank line
           "# TYPE g gauge\ng 1 2 3\n",                                // trailing junk
           "# TYPE g gauge\ng one\n",                                  // bad value
           "# TYPE g gauge\ng{x=1} 1\n",                               // unquoted label
           "# TYPE g gauge\ng{x=\"1\" 1\n",                            // unclosed labels
           "# TYPE g gauge\ng{x=\"1\",x=\"2\"} 1\n",                   // repeated label
           "# TYPE g gauge\ng 1\ng 2\n",                               // duplicate series
           "# TYPE g gauge\n# TYPE g gauge\ng 1\n",                    // second TYPE
           "# TYPE g gauge\ng 1\n# TYPE f gauge\nf 1\ng{x=\"\"} 1\n",  // not grouped
           "# TYPE g wibble\ng 1\n",                                   // unknown type
           "# TYPE g gauge\ng_other 1\n",                              // name outside its family
           "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
           "h_sum 1\nh_count 1\n",  // decreasing buckets
           "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
           "h_sum 1\nh_count 3\n",  // +Inf bucket != _count
           "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  // no +Inf
       }) {
    Exposition e;
    EXPECT_FALSE(ParseExposition(bad, &e)) << bad;
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class MetricsTest : public ::testing::Test {
 protected:
  MetricsTest() {
    kvd_.set_extra_args({"--metrics-listen", "127.0.0.1:0", "--metrics-port-file", PortFile()});
  }
  void SetUp() override {
    ASSERT_TRUE(kvd_.Start());
    // The metrics endpoint is up before the client port file is written.
    const std::string content = ReadFile(PortFile());
    ASSERT_TRUE(content.starts_with("127.0.0.1:") && content.ends_with("\n")) << content;
    metrics_ = content.substr(0, content.size() - 1);
    ASSERT_NE(metrics_, "127.0.0.1:0");
    ASSERT_NE(metrics_, kvd_.address());
  }
  std::string PortFile() const { return kvd_.dir() + "/metrics-port"; }

  KvdProcess kvd_;
  std::string metrics_;  // "127.0.0.1:PORT" of the endpoint
};

TEST_F(MetricsTest, MetricsIsAStrictPrometheusExposition) {
  constexpr int kPuts = 5;
  constexpr int kGets = 3;
  for (int i = 0; i < kPuts; ++i) {
    ASSERT_TRUE(IsOk(kvd_.Call({{"op", "put"}, {"key", "k" + std::to_string(i)}, {"value", i}})));
  }
  for (int i = 0; i < kGets; ++i) ASSERT_TRUE(IsOk(kvd_.Call({{"op", "get"}, {"key", "k0"}})));
  ASSERT_TRUE(IsError(kvd_.Call({{"op", "frobnicate"}}), "unknown_op"));

  const HttpReply r = Http(metrics_, "GET", "/metrics");
  ASSERT_TRUE(r.complete) << r.error;
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.headers.at("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.headers.at("content-length"), std::to_string(r.body.size()));
  EXPECT_EQ(r.headers.at("connection"), "close");

  Exposition e;
  ASSERT_TRUE(ParseExposition(r.body, &e)) << r.body;
  EXPECT_EQ(e.Value("ringkv_requests_total", {{"op", "put"}}), kPuts);
  EXPECT_EQ(e.Value("ringkv_requests_total", {{"op", "get"}}), kGets);
  EXPECT_EQ(e.Value("ringkv_request_errors_total", {{"code", "unknown_op"}}), 1);
  EXPECT_EQ(e.types["ringkv_requests_total"], "counter");
  EXPECT_EQ(e.types["ringkv_request_duration_seconds"], "histogram");
  EXPECT_EQ(e.Value("ringkv_node_info", {{"node", "n1"}}), 1);
  // Five puts one after another on one connection: five group commits of one.
  EXPECT_EQ(e.Value("ringkv_batched_writes_total", {}), kPuts);
  EXPECT_EQ(e.Value("ringkv_write_batches_total", {}), kPuts);
  EXPECT_EQ(e.types["ringkv_write_batches_total"], "counter");
  EXPECT_EQ(e.Value("ringkv_store_write_error", {}), 0);
  EXPECT_EQ(e.types["ringkv_store_write_error"], "gauge");
  EXPECT_EQ(e.Value("ringkv_store_resumes_total", {}), 0);

  // The put latency histogram: its buckets are checked by the parser; here,
  // that it is there and counted every put.
  const std::string hist = "ringkv_request_duration_seconds";
  EXPECT_EQ(e.Value(hist + "_count", {{"op", "put"}}), kPuts);
  EXPECT_EQ(e.Value(hist + "_bucket", {{"op", "put"}, {"le", "+Inf"}}), kPuts);
  const auto sum = e.Value(hist + "_sum", {{"op", "put"}});
  ASSERT_TRUE(sum.has_value());
  EXPECT_GT(*sum, 0);
  EXPECT_LT(*sum, 60);  // seconds, not microseconds
  int put_buckets = 0;
  double previous = 0;
  for (const Sample& s : e.samples) {
    if (s.name != hist + "_bucket" || s.labels.at("op") != "put") continue;
    ++put_buckets;
    EXPECT_GE(s.value, previous) << "le=" << s.labels.at("le");
    previous = s.value;
  }
  EXPECT_GT(put_buckets, 1);

  // A scrape changes nothing in the counters it shows.
  const HttpReply again = Http(metrics_, "GET", "/metrics");
  Exposition e2;
  ASSERT_TRUE(ParseExposition(again.body, &e2)) << again.body;
  EXPECT_EQ(e2.Value("ringkv_requests_total", {{"op", "put"}}), kPuts);

  EXPECT_EQ(kvd_.Terminate(), 0);
}

TEST_F(MetricsTest, HeadGivesTheHeadersOnly) {
  const HttpReply r = Http(metrics_, "HEAD", "/metrics");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_GT(std::atoi(r.headers.at("content-length").c_str()), 0);
}

TEST_F(MetricsTest, HealthIs200WhileServing) {
  const HttpReply r = Http(metrics_, "GET", "/health");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok\n");
  EXPECT_EQ(kvd_.Terminate(), 0);
}

TEST_F(MetricsTest, ErrorStatuses) {
  HttpReply r = Http(metrics_, "GET", "/nope");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 404);

  r = Exchange(metrics_, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers.at("allow"), "GET, HEAD");

  r = Exchange(metrics_, "this is not http\r\n\r\n");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_EQ(r.status, 400);

  // A 64 KiB header: refused with a 4xx, and the node goes on serving.
  r = Exchange(metrics_,
               "GET /metrics HTTP/1.1\r\nX-Big: " + std::string(64 * 1024, 'x') + "\r\n\r\n");
  ASSERT_TRUE(r.complete) << r.error;
  EXPECT_GE(r.status, 400);
  EXPECT_LT(r.status, 500);
  EXPECT_TRUE(IsOk(kvd_.Call({{"op", "ping"}})));
  EXPECT_EQ(Http(metrics_, "GET", "/metrics").status, 200);
  EXPECT_EQ(Http(metrics_, "GET", "/health").status, 200);

  EXPECT_EQ(kvd_.Terminate(), 0);
}

// A second node asking for the same metrics port fails to start with one
// clear error line and exit status 1.
TEST_F(MetricsTest, MetricsPortInUseFailsStartup) {
  const std::string dir = MakeTempDir("ringkv-metrics");
  ASSERT_FALSE(dir.empty());
  const ProcessResult result = RunProgram(KvdPath(), {"--listen", "127.0.0.1:0", "--data-dir",
                                                      dir + "/data", "--metrics-listen", metrics_});
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_NE(result.err.find("kvd: error: cannot listen for metrics on " + metrics_),
            std::string::npos)
      << result.err;
  EXPECT_EQ(Http(metrics_, "GET", "/health").status, 200);  // the first node is unaffected
}

TEST(MetricsFlagsTest, BadFlagsAreUsageErrors) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--metrics-listen", "nope"},
           {"--metrics-listen", "127.0.0.1:99999"},
           {"--metrics-port-file", "/tmp/never-written"},
       }) {
    const ProcessResult result = RunProgram(KvdPath(), args);
    EXPECT_EQ(result.exit_code, 2) << args[0] << " " << args[1] << ": " << result.err;
    EXPECT_TRUE(result.err.starts_with("kvd: error: --metrics-")) << result.err;
    EXPECT_EQ(NonEmptyLines(result.err).size(), 1u) << result.err;
  }
  const ProcessResult help = RunProgram(KvdPath(), {"--help"});
  EXPECT_NE(help.out.find("--metrics-listen"), std::string::npos);
  EXPECT_NE(help.out.find("--metrics-port-file"), std::string::npos);
}

TEST(MetricsOffTest, NoEndpointWithoutTheFlag) {
  KvdProcess kvd;
  ASSERT_TRUE(kvd.Start());
  EXPECT_EQ(kvd.ReadLog().find("[metrics]"), std::string::npos);
  EXPECT_EQ(kvd.Terminate(), 0);
}

}  // namespace
}  // namespace ringkv::itest
