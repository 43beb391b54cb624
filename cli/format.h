// Formatting for people, shared by kvctl's reports (stats, cluster, backup):
// fields of a JSON response as display text, human units, aligned tables.
//
// Thread-safety: pure functions (PrintTable writes to std::cout).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ringkv::cli {

using nlohmann::json;

// A field as display text: strings raw, anything else as compact JSON, "" if absent.
std::string Field(const json& obj, const char* key);
// True if obj[key] is the JSON literal true.
bool IsTrue(const json& obj, const char* key);
// obj[key] as a number, if it is one.
std::optional<double> Number(const json& obj, const char* key);
// obj[key] as an object (an empty one if absent or not an object).
json Object(const json& obj, const char* key);

std::string Printf(const char* format, double value);
// 1536 -> "1.5 KiB".
std::string HumanBytes(double bytes);
// Microseconds for a person: "850 µs", "1.25 ms", "2.10 s".
std::string HumanMicros(double us);
// 3725 -> "1h 2m 5s".
std::string HumanSeconds(double seconds);
std::string Integer(double value);
// "1 node", "3 nodes".
std::string Nodes(size_t n);
bool EndsWith(std::string_view text, std::string_view suffix);
// A value whose meaning is known only from its name: "*_bytes" in bytes,
// "*_us" in microseconds, "*_ms" in milliseconds, "*_s" in seconds.
std::string ByName(const std::string& name, const json& value);
// Flattens nested objects into "a.b.c" -> value rows.
void Flatten(const json& j, const std::string& prefix,
             std::vector<std::pair<std::string, json>>* rows);

// Display width of UTF-8 text (code points; "µ" is one column).
size_t Width(const std::string& text);
std::string Pad(const std::string& text, size_t width, bool right_align = false);
// Prints rows as aligned columns, two spaces apart; `right` marks the
// columns to right-align (numbers). The last column is not padded.
void PrintTable(const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right,
                const std::string& indent = "");

}  // namespace ringkv::cli
