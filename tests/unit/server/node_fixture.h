// A Node on a fresh temporary data dir and a manual clock, driven with plain
// request lines: no sockets, no sleeps.
#pragma once

#include <gtest/gtest.h>

#include <future>
#include <nlohmann/json.hpp>

#include "server/node.h"
#include "tests/util/temp_dir.h"

namespace ringkv {

class NodeFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = dir_ + "/data";
    options_.clock = &clock_;
    options_.cache_bytes = 1 << 20;
    options_.wal_sync_ms = 0;
  }
  void TearDown() override { node_.reset(); }

  void OpenNode() {
    NodeOptions o = options_;
    ASSERT_TRUE(FinalizeNodeOptions(&o).ok());
    Status s = Node::Open(o, &node_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Sends one line and returns the response line, waiting for asynchronous ops.
  std::string CallRaw(std::string_view line) {
    std::promise<std::string> p;
    auto f = p.get_future();
    node_->Handle(conn_, line, [&p](std::string response) { p.set_value(std::move(response)); });
    return f.get();
  }
  nlohmann::json Call(const nlohmann::json& req) { return Parse(CallRaw(req.dump())); }
  static nlohmann::json Parse(const std::string& line) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "response is not JSON: " << line;
    EXPECT_TRUE(j.is_object()) << line;
    return j;
  }
  static std::string ErrorCode(const nlohmann::json& resp) {
    if (resp.value("ok", true)) return "ok";
    return resp["error"]["code"].get<std::string>();
  }

  ManualClock clock_{1'700'000'000'000ULL};
  NodeOptions options_;
  // Declared before node_: removed after the node is closed.
  testutil::ScopedTempDir temp_dir_{"ringkv-node"};
  const std::string& dir_ = temp_dir_.path();
  std::unique_ptr<Node> node_;
  // The one connection every call goes over (a fresh, unauthenticated one).
  std::shared_ptr<Connection> conn_ = std::make_shared<Connection>();
};

}  // namespace ringkv
