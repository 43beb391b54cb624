// `kvctl aae`: the anti-entropy report of one node, from the `aae` op.
//
// A summary line (exchanges, repairs, partitions in sync), a progress bar
// while the node rebuilds a lost disk, then one row per partition this node
// replicates: its replicas, whether it is in sync, the GC watermark's lag,
// and per peer the last exchange's result, age and repairs.
#pragma once

#include <nlohmann/json.hpp>
#include <ostream>

namespace ringkv {

// Prints the report of an `aae` object (the response's "aae" field).
void PrintAaeReport(const nlohmann::json& aae, std::ostream& out);

// "[#########.........] 45%" for done/total (total 0: 100%).
std::string ProgressBar(double done, double total, int width = 30);

}  // namespace ringkv
