#include "cli/stats_report.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli/format.h"

namespace ringkv::cli {
namespace {

// kvctl stats: grouped sections for a person; every field the node sends is
// shown somewhere ("other" takes the ones this version does not know).

class StatsReport {
 public:
  explicit StatsReport(json stats) : stats_(std::move(stats)) {}

  void Print() {
    Header();
    Storage();
    Cache();
    Replication();
    Requests();
    Errors();
    Other();
    // One label column for every section, so that the values line up.
    size_t width = 0;
    for (const auto& [title, rows] : sections_) {
      for (const auto& row : rows) {
        if (row.size() > 1) width = std::max(width, Width(row[0]) + (title.empty() ? 0 : 2));
      }
    }
    bool first = true;
    for (const auto& [title, rows] : sections_) {
      if (rows.empty()) continue;
      if (!first) std::cout << "\n";
      first = false;
      std::string indent = title.empty() ? "" : "  ";
      if (!title.empty()) std::cout << title << "\n";
      for (const auto& row : rows) {
        if (row.size() < 2 || row[1].empty()) {
          std::cout << indent << row[0] << "\n";
        } else {
          std::cout << Pad(indent + row[0], width) << "  " << row[1] << "\n";
        }
      }
    }
  }

 private:
  using Rows = std::vector<std::vector<std::string>>;

  // Marks top-level `key` shown and returns it (null if absent).
  json Take(const char* key) {
    taken_.insert(key);
    auto it = stats_.find(key);
    return it == stats_.end() ? json() : *it;
  }
  std::optional<double> TakeNumber(const char* key) {
    json v = Take(key);
    return v.is_number() ? std::optional<double>(v.get<double>()) : std::nullopt;
  }
  Rows& Section(const std::string& title) {
    sections_.emplace_back(title, Rows{});
    return sections_.back().second;
  }
  static void Add(Rows* rows, const std::string& label, const std::optional<double>& value,
                  std::string (*format)(double) = Integer) {
    if (value) rows->push_back({label, format(*value)});
  }

  void Header() {
    Rows& rows = Section("");
    json node = Take("node");
    if (node.is_string()) rows.push_back({"node", node.get<std::string>()});
    Add(&rows, "uptime", TakeNumber("uptime_s"), HumanSeconds);
  }

  void Storage() {
    Rows& rows = Section("storage");
    Add(&rows, "keys (estimate)", TakeNumber("keys_estimate"));
    Add(&rows, "partitions replicated", TakeNumber("partitions_replicated"));
    json per_partition = Take("partition_keys");
    if (per_partition.is_object()) {
      double least = -1, most = 0;
      for (const auto& n : per_partition) {
        if (!n.is_number()) continue;
        double v = n.get<double>();
        least = least < 0 ? v : std::min(least, v);
        most = std::max(most, v);
      }
      std::string text = std::to_string(per_partition.size());
      if (!per_partition.empty())
        text += " (" + Integer(least) + " to " + Integer(most) + " keys each)";
      rows.push_back({"partitions holding data", text});
    }
    Add(&rows, "disk", TakeNumber("disk_bytes"), HumanBytes);
    json rocks = Take("rocksdb");
    if (!rocks.is_object()) return;
    auto take_rocks = [&](const char* key) -> std::optional<double> {
      std::optional<double> v = Number(rocks, key);
      rocks.erase(key);
      return v;
    };
    Add(&rows, "  sst files", take_rocks("sst_bytes"), HumanBytes);
    Add(&rows, "  write-ahead log", take_rocks("wal_bytes"), HumanBytes);
    Add(&rows, "memtables", take_rocks("memtable_bytes"), HumanBytes);
    Add(&rows, "compaction pending", take_rocks("pending_compaction_bytes"), HumanBytes);
    std::optional<double> used = take_rocks("block_cache_usage_bytes");
    std::optional<double> capacity = take_rocks("block_cache_capacity_bytes");
    if (used && capacity) {
      rows.push_back({"block cache", HumanBytes(*used) + " of " + HumanBytes(*capacity)});
    }
    for (auto it = rocks.begin(); it != rocks.end(); ++it) {
      rows.push_back({"rocksdb " + it.key(), ByName(it.key(), it.value())});
    }
  }

  void Cache() {
    json cache = Take("cache");
    if (!cache.is_object()) return;
    Rows& rows = Section("record cache");
    Add(&rows, "entries", Number(cache, "entries"));
    std::optional<double> bytes = Number(cache, "bytes"),
                          capacity = Number(cache, "capacity_bytes");
    if (bytes && capacity)
      rows.push_back({"size", HumanBytes(*bytes) + " of " + HumanBytes(*capacity)});
    std::optional<double> hits = Number(cache, "hits"), misses = Number(cache, "misses");
    if (hits && misses) {
      double total = *hits + *misses;
      rows.push_back(
          {"hits", Integer(*hits) + (total > 0 ? Printf(" (%.1f%%)", 100 * *hits / total) : "")});
      rows.push_back({"misses", Integer(*misses)});
    }
    for (const char* known : {"entries", "bytes", "capacity_bytes", "hits", "misses"})
      cache.erase(known);
    for (auto it = cache.begin(); it != cache.end(); ++it) {
      rows.push_back({it.key(), ByName(it.key(), it.value())});
    }
  }

  void Replication() {
    Rows& rows = Section("replication");
    json peers = Take("peers");
    if (peers.is_object()) {
      std::string text;
      for (auto it = peers.begin(); it != peers.end(); ++it) {
        text += (text.empty() ? "" : ", ") + it.key() + " " +
                (it->is_string() ? it->get<std::string>() : it->dump());
      }
      rows.push_back({"peers", text.empty() ? "none (single node)" : text});
    }
    std::optional<double> pending = TakeNumber("hints_pending");
    json per_target = Take("hints_pending_per_target");
    if (pending) {
      std::string text = Integer(*pending);
      std::string targets;
      if (per_target.is_object()) {
        for (auto it = per_target.begin(); it != per_target.end(); ++it) {
          if (it->is_number() && it->get<double>() == 0) continue;
          targets += (targets.empty() ? "" : ", ") + it.key() + " " + it->dump();
        }
      }
      if (!targets.empty()) text += " (for " + targets + ")";
      rows.push_back({"hints pending", text});
    }
    Add(&rows, "hints written", TakeNumber("hints_written"));
    Add(&rows, "hints delivered", TakeNumber("hints_delivered"));
    Add(&rows, "hints dropped", TakeNumber("hints_dropped"));
    Add(&rows, "read repairs", TakeNumber("read_repairs"));
    Add(&rows, "clock skew rejections", TakeNumber("clock_skew_rejections"));
  }

  void Requests() {
    json ops = Take("ops");
    json latency = Take("latency_us");
    if (!ops.is_object()) return;
    Rows& rows = Section("requests (latency: p50 / p99 / p99.9 / max)");
    Rows table = {{"OP", "COUNT", "P50", "P99", "P99.9", "MAX"}};
    for (auto it = ops.begin(); it != ops.end(); ++it) {
      if (!it->is_number() || it->get<double>() == 0) continue;
      json l = Object(latency, it.key().c_str());
      auto micros = [&](const char* key) {
        std::optional<double> v = Number(l, key);
        return v ? HumanMicros(*v) : std::string("-");
      };
      table.push_back(
          {it.key(), it->dump(), micros("p50"), micros("p99"), micros("p999"), micros("max")});
    }
    if (table.size() == 1) {
      rows.push_back({"none yet"});
      return;
    }
    // Rendered here (six columns) and kept as pre-formatted single cells.
    std::vector<size_t> widths(6, 0);
    for (const auto& row : table) {
      for (size_t c = 0; c < 6; ++c) widths[c] = std::max(widths[c], Width(row[c]));
    }
    for (const auto& row : table) {
      std::string line = Pad(row[0], widths[0]);
      for (size_t c = 1; c < 6; ++c) line += "  " + Pad(row[c], widths[c], true);
      rows.push_back({line});
    }
  }

  void Errors() {
    json errors = Take("errors");
    if (!errors.is_object()) return;
    Rows& rows = Section("errors");
    for (auto it = errors.begin(); it != errors.end(); ++it) {
      if (it->is_number() && it->get<double>() == 0) continue;
      rows.push_back({it.key(), it->dump()});
    }
    if (rows.empty()) rows.push_back({"none"});
  }

  void Other() {
    std::vector<std::pair<std::string, json>> flat;
    for (auto it = stats_.begin(); it != stats_.end(); ++it) {
      if (taken_.count(it.key()) == 0) Flatten(it.value(), it.key(), &flat);
    }
    Rows& rows = Section("other");
    for (const auto& [name, value] : flat) rows.push_back({name, ByName(name, value)});
  }

  json stats_;
  std::set<std::string> taken_;
  std::vector<std::pair<std::string, Rows>> sections_;
};

}  // namespace

void PrintStats(const json& resp) { StatsReport(Object(resp, "stats")).Print(); }

}  // namespace ringkv::cli
