// kvctl's backup and restore (PROTOCOL.md §7):
// - `cluster-backup DEST` (scripts/kv-backup) backs up every member into
//   DEST/<node-id>/ and then writes DEST/manifest.json atomically;
// - `restore DEST NODE_ID DATA_DIR` (scripts/kv-restore) verifies and
//   restores one node's backup into an empty data dir, with no node running.
#pragma once

#include "cli/kvctl_args.h"

namespace ringkv::kvctl {

// Each returns kvctl's exit status.
int RunClusterBackup(const Invocation& inv);
int RunRestore(const Invocation& inv);

}  // namespace ringkv::kvctl
