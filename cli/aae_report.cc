#include "cli/aae_report.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace ringkv {
namespace {

using json = nlohmann::json;

uint64_t U64(const json& j, const char* name) {
  auto it = j.find(name);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

std::string Age(uint64_t ms) {
  char buf[32];
  if (ms < 1000) return std::to_string(ms) + "ms";
  if (ms < 120'000) {
    std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(ms) / 1e3);
  } else if (ms < 7'200'000) {
    std::snprintf(buf, sizeof(buf), "%.0fm", static_cast<double>(ms) / 6e4);
  } else if (ms < 172'800'000) {
    std::snprintf(buf, sizeof(buf), "%.0fh", static_cast<double>(ms) / 3.6e6);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0fd", static_cast<double>(ms) / 8.64e7);
  }
  return buf;
}

// The watermark's lag behind the wall clock ("-" when never raised).
std::string WatermarkLag(uint64_t watermark_hlc) {
  if (watermark_hlc == 0) return "-";
  auto now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
  uint64_t at = watermark_hlc >> 16;
  return Age(now > at ? now - at : 0);
}

std::string Join(const json& array) {
  std::string out;
  if (!array.is_array()) return out;
  for (const json& v : array) {
    if (!out.empty()) out += ",";
    out += v.is_string() ? v.get<std::string>() : v.dump();
  }
  return out;
}

}  // namespace

std::string ProgressBar(double done, double total, int width) {
  double f = total <= 0 ? 1.0 : std::clamp(done / total, 0.0, 1.0);
  int filled = static_cast<int>(f * width + 0.5);
  std::string out = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
  out += std::to_string(static_cast<int>(f * 100)) + "%";
  return out;
}

void PrintAaeReport(const json& aae, std::ostream& out) {
  if (!aae.value("enabled", true)) {
    out << "anti-entropy is off on this node (--no-anti-entropy): "
           "tombstones are purged after the grace period alone\n";
  }
  out << "exchanges " << U64(aae, "exchanges") << ", keys repaired " << U64(aae, "keys_repaired")
      << ", false deltas " << U64(aae, "false_deltas") << ", partitions in sync "
      << U64(aae, "partitions_in_sync") << "/" << U64(aae, "partitions_total") << "\n";
  if (aae.value("rebuilding", false)) {
    uint64_t total = U64(aae, "rebuild_partitions_total");
    uint64_t pending = U64(aae, "rebuild_partitions_pending");
    out << "rebuilding "
        << ProgressBar(static_cast<double>(total - std::min(total, pending)),
                       static_cast<double>(total))
        << "  " << (total - std::min(total, pending)) << "/" << total << " partitions, "
        << U64(aae, "rebuild_records") << " records pulled\n";
  }
  auto parts = aae.find("partitions");
  if (parts == aae.end() || !parts->is_array() || parts->empty()) return;
  std::vector<std::vector<std::string>> rows = {
      {"PART", "REPLICAS", "IN SYNC", "GC LAG", "PEER", "LAST", "AGO", "REPAIRED", "TOTAL"}};
  for (const json& p : *parts) {
    std::string in_sync = p.value("in_sync", false) ? "yes" : "no";
    auto pending = p.find("rebuild_pending");
    if (pending != p.end() && pending->is_array() && !pending->empty()) {
      in_sync = "rebuilding from " + Join(*pending);
    }
    std::vector<std::string> first = {std::to_string(U64(p, "partition")),
                                      Join(p.value("replicas", json::array())), in_sync,
                                      WatermarkLag(U64(p, "watermark"))};
    auto peers = p.find("peers");
    bool any = false;
    if (peers != p.end() && peers->is_object()) {
      for (auto it = peers->begin(); it != peers->end(); ++it) {
        const json& ps = it.value();
        std::vector<std::string> row = any ? std::vector<std::string>{"", "", "", ""} : first;
        row.push_back(it.key());
        std::string result = ps.value("result", "?");
        if (ps.contains("error")) result += " (" + ps.value("error", "") + ")";
        row.push_back(result);
        row.push_back(ps.contains("age_ms") ? Age(U64(ps, "age_ms")) : "-");
        row.push_back(std::to_string(U64(ps, "keys_repaired")));
        row.push_back(std::to_string(U64(ps, "total_repaired")));
        rows.push_back(std::move(row));
        any = true;
      }
    }
    if (!any) {
      first.insert(first.end(), {"-", "-", "-", "-", "-"});
      rows.push_back(std::move(first));
    }
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out << line << "\n";
  }
}

}  // namespace ringkv
