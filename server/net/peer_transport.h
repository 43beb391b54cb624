// PeerTransport: the ReplicaTransport a kvd's coordinators use, with a peer
// client on each I/O thread.
//
// A client request is read, coordinated and answered on one server I/O
// thread. With one PeerClient thread for the whole node, every replicated
// write crossed threads twice on the coordinator (the I/O thread handed the
// request to the peer thread, the peer thread handed the answers back), and
// each crossing woke a thread. Here every server I/O thread runs a PeerClient
// of its own on its own io_context (Server's IoThreadHooks): a request made
// on that thread is sent, and its answer handled, on that thread, and the
// requests of one wake-up leave in one write per connection.
//
// Requests from any other thread (hinted handoff, anti-entropy, membership)
// go to the node's shared PeerClient, `fallback`, as before; so do Hello(),
// Send() and the failure detector, which use that client directly.
//
// Each I/O thread's client keeps its own connections (`connections_per_peer`
// of the shard options, default 1) and its own bound of pending bytes per
// peer; a peer that refuses connections is learnt by each client on its own.
//
// Lifecycle:
//   PeerTransport transport(&fallback, shard_options, peers, self, fingerprint);
//   ServerOptions.hooks = &transport;  // Server::Start() attaches, Stop() detaches
//   ... server->Stop(); ...            // detaches: pending requests fail
//   transport destroyed after the server's Stop() and before the server (the
//   clients' sockets belong to the server's io_contexts).
//
// Thread-safety: Write(), Read() and AddPeer() from any thread. One server
// attaches it, each I/O thread once.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "server/cluster/transport.h"
#include "server/net/peer_client.h"
#include "server/net/server.h"

namespace ringkv::net {

class PeerTransport final : public cluster::ReplicaTransport, public IoThreadHooks {
 public:
  // `fallback`: the node's shared client, started and stopped by its owner.
  // `shard_options`: each I/O thread's client's (its `io` is set here).
  // `peers`: (id, "HOST:PORT") of every peer known now.
  // REQUIRES: `fallback` outlives the transport.
  PeerTransport(PeerClient* fallback, PeerClientOptions shard_options,
                std::vector<std::pair<std::string, std::string>> peers, std::string self,
                std::string fingerprint);
  ~PeerTransport() override;

  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // A node to reach from now on, by the fallback and every I/O thread's
  // client, present and future.
  void AddPeer(const std::string& id, const std::string& address);

  // ReplicaTransport: on an attached I/O thread, through its client;
  // elsewhere through the fallback.
  void Write(const std::string& node, const std::string& key, const Record& record,
             cluster::Epoch epoch, uint64_t timeout_ms, WriteDone done) override;
  void Read(const std::string& node, const std::string& key, cluster::Epoch epoch,
            uint64_t timeout_ms, ReadDone done) override;

  // IoThreadHooks.
  void Attach(size_t index, asio::io_context& io) override;
  void Detach(size_t index) override;

  // I/O threads attached now (for tests and stats).
  size_t attached() const;

 private:
  // The calling thread's client if it is an I/O thread attached to this
  // transport, else the fallback.
  PeerClient* ClientHere() const;

  PeerClient* const fallback_;
  const PeerClientOptions shard_options_;
  const std::string self_;
  const std::string fingerprint_;

  mutable std::mutex mu_;  // protects the following
  std::vector<std::pair<std::string, std::string>> peers_;
  // By I/O thread index. A detached client is kept (stopped) until the
  // transport goes: handlers still queued on its io_context refer to it.
  std::vector<std::unique_ptr<PeerClient>> shards_;
  std::vector<bool> live_;  // attached and not yet detached
};

}  // namespace ringkv::net
