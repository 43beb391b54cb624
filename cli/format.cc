// Formatting for people: see format.h.
#include "cli/format.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace ringkv::cli {

// A field as display text: strings raw, anything else as compact JSON, "" if absent.
std::string Field(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  if (it == obj.end()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// True if obj[key] is the JSON literal true.
bool IsTrue(const json& obj, const char* key) {
  if (!obj.is_object()) return false;
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

// obj[key] as a number, if it is one.
std::optional<double> Number(const json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

// obj[key] as an object (an empty one if absent or not an object).
json Object(const json& obj, const char* key) {
  if (!obj.is_object()) return json::object();
  auto it = obj.find(key);
  return it != obj.end() && it->is_object() ? *it : json::object();
}

std::string Printf(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

// 1536 -> "1.5 KiB".
std::string HumanBytes(double bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 5) {
    bytes /= 1024;
    ++unit;
  }
  if (unit == 0) return Printf("%.0f B", bytes);
  return Printf("%.1f ", bytes) + kUnits[unit];
}

// Microseconds for a person: "850 µs", "1.25 ms", "2.10 s".
std::string HumanMicros(double us) {
  if (us < 1000) return Printf("%.0f µs", us);
  if (us < 1000000) return Printf("%.2f ms", us / 1000);
  return Printf("%.2f s", us / 1000000);
}

// 3725 -> "1h 2m 5s".
std::string HumanSeconds(double seconds) {
  auto s = static_cast<uint64_t>(seconds < 0 ? 0 : seconds);
  uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;
  s %= 60;
  std::string out;
  if (d > 0) out += std::to_string(d) + "d ";
  if (d > 0 || h > 0) out += std::to_string(h) + "h ";
  if (d > 0 || h > 0 || m > 0) out += std::to_string(m) + "m ";
  return out + std::to_string(s) + "s";
}

std::string Integer(double value) { return Printf("%.0f", value); }

// "1 node", "3 nodes".
std::string Nodes(size_t n) { return std::to_string(n) + (n == 1 ? " node" : " nodes"); }

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// A value whose meaning is known only from its name: "*_bytes" in bytes,
// "*_us" in microseconds, "*_ms" in milliseconds, "*_s" in seconds.
std::string ByName(const std::string& name, const json& value) {
  if (!value.is_number()) return value.is_string() ? value.get<std::string>() : value.dump();
  double v = value.get<double>();
  if (EndsWith(name, "_bytes")) return HumanBytes(v);
  if (EndsWith(name, "_us")) return HumanMicros(v);
  if (EndsWith(name, "_ms")) return HumanMicros(v * 1000);
  if (EndsWith(name, "_s")) return HumanSeconds(v);
  return value.dump();
}

// Flattens nested objects into "a.b.c" -> value rows.
void Flatten(const json& j, const std::string& prefix,
             std::vector<std::pair<std::string, json>>* rows) {
  if (j.is_object() && !j.empty()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      Flatten(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), rows);
    }
    return;
  }
  rows->emplace_back(prefix, j);
}

// Display width of UTF-8 text (code points; "µ" is one column).
size_t Width(const std::string& text) {
  size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

std::string Pad(const std::string& text, size_t width, bool right_align) {
  size_t w = Width(text);
  std::string fill(w < width ? width - w : 0, ' ');
  return right_align ? fill + text : text + fill;
}

// Prints rows as aligned columns, two spaces apart; `right` marks the
// columns to right-align (numbers). The last column is not padded.
void PrintTable(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right,
                const std::string& indent) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], Width(row[c]));
  }
  for (const auto& row : rows) {
    std::string line = indent;
    for (size_t c = 0; c < row.size(); ++c) {
      bool align_right = c < right.size() && right[c];
      bool last = c + 1 == row.size();
      line += last && !align_right ? row[c] : Pad(row[c], widths[c], align_right);
      if (!last) line += "  ";
    }
    std::cout << line << "\n";
  }
}

}  // namespace ringkv::cli
