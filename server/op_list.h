// The op table: the single source of every operation's enum value, wire
// name, field parser, handler, least role and scope (PROTOCOL.md §3, §11).
//
// Each row is X(Enum, "name", Parser, Handler, Role, Scope):
//   Parser   a function in server/protocol.cc: Status(const json&, const Limits&, Request*)
//   Handler  a member function of Node::Impl in server/node.cc: void(const Request&, Done)
//   Role     the least security::Role a user needs (kNone for ops that are not the client's)
//   Scope    kOpen:   anyone, before any authentication (the authentication ops themselves)
//            kClient: a client op; with --auth-file, needs an authenticated user of Role
//            kPeer:   internal, node to node; needs an authenticated peer (see node.cc Admit)
//
// stats.h expands it into `enum class Op`, protocol.cc into the parser table,
// node.cc into the handler table: a row without a parser or a handler does
// not compile, and no table can miss a row. Add a row at the end of its
// group; the order is the enum's (and the order of ops in stats).
#pragma once

#define RINGKV_OPS(X)                                                                \
  X(kPut, "put", ParsePut, Put, kReadWrite, kClient)                                 \
  X(kGet, "get", ParseGet, Get, kRead, kClient)                                      \
  X(kDelete, "delete", ParseDelete, Delete, kReadWrite, kClient)                     \
  X(kPing, "ping", ParseNothing, Ping, kRead, kClient)                               \
  X(kStats, "stats", ParseNothing, StatsOp, kRead, kClient)                          \
  X(kCluster, "cluster", ParseNothing, ClusterOp, kRead, kClient)                    \
  X(kLocate, "locate", ParseLocate, Locate, kRead, kClient)                          \
  X(kBackup, "backup", ParseBackup, Backup, kAdmin, kClient)                         \
  X(kAae, "aae", ParseNothing, AaeOp, kAdmin, kClient)                               \
  X(kCompact, "compact", ParseNothing, Compact, kAdmin, kClient)                     \
  X(kAuth, "auth", ParseAuth, Auth, kNone, kOpen)                                    \
  X(kPeerWrite, "_write", ParsePeerWrite, PeerWrite, kNone, kPeer)                   \
  X(kPeerRead, "_read", ParsePeerRead, PeerRead, kNone, kPeer)                       \
  X(kPeerHello, "_hello", ParsePeerHello, PeerHello, kNone, kPeer)                   \
  X(kAaeTree, "_aae_tree", ParseAaeTree, PeerAaeTree, kNone, kPeer)                  \
  X(kAaeKeys, "_aae_keys", ParseAaeKeys, PeerAaeKeys, kNone, kPeer)                  \
  X(kAaeFetch, "_aae_fetch", ParseAaeFetch, PeerAaeFetch, kNone, kPeer)              \
  X(kAaeScan, "_aae_scan", ParseAaeScan, PeerAaeScan, kNone, kPeer)                  \
  X(kAaeGc, "_aae_gc", ParseAaeGc, PeerAaeGc, kNone, kPeer)                          \
  X(kChallenge, "_challenge", ParseNothing, PeerChallenge, kNone, kOpen)             \
  X(kPeerAuth, "_peer_auth", ParsePeerAuth, PeerAuth, kNone, kOpen)                  \
  X(kMembership, "membership", ParseMembership, MembershipOp, kAdmin, kClient)       \
  X(kPeerMembership, "_membership", ParseMembership, PeerMembershipOp, kNone, kPeer) \
  X(kMap, "_map", ParseNothing, PeerMapOp, kNone, kPeer)                             \
  X(kMapPush, "_map_push", ParseMapPush, PeerMapPush, kNone, kPeer)                  \
  X(kXferOpen, "_xfer_open", ParseXferOpen, PeerXferOpen, kNone, kPeer)              \
  X(kXferRead, "_xfer_read", ParseXferRead, PeerXferRead, kNone, kPeer)              \
  X(kXferClose, "_xfer_close", ParseXferClose, PeerXferClose, kNone, kPeer)          \
  X(kMoveReport, "_move_report", ParseMoveReport, PeerMoveReport, kNone, kPeer)

namespace ringkv {

// Who may send an op (see the table's comment).
enum class OpScope { kOpen, kClient, kPeer };

}  // namespace ringkv
