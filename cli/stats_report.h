// `kvctl stats` for a person: the node's stats response in grouped sections
// (node, storage, cache, replication, requests, errors), every field the node
// sends shown somewhere ("other" takes the ones this version does not know).
#pragma once

#include <nlohmann/json.hpp>

namespace ringkv::cli {

// Prints resp["stats"] to std::cout.
void PrintStats(const nlohmann::json& resp);

}  // namespace ringkv::cli
