// The one HOST:PORT parser and node-id check (common/host_port.h).
#include "common/host_port.h"

#include <gtest/gtest.h>

namespace ringkv {
namespace {

TEST(HostPortTest, AcceptsHostsPortsAndBracketedV6) {
  HostPort hp;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:7700", &hp).ok());
  EXPECT_EQ(hp.host, "127.0.0.1");
  EXPECT_EQ(hp.port, 7700);
  ASSERT_TRUE(ParseHostPort("[::1]:0", &hp).ok());
  EXPECT_EQ(hp.host, "::1");
  EXPECT_EQ(hp.port, 0);
  ASSERT_TRUE(ParseHostPort("db.example:65535", &hp).ok());
  EXPECT_EQ(hp.port, 65535);
}

TEST(HostPortTest, RefusesWithTheReason) {
  HostPort hp;
  for (const char* bad : {"", "7700", ":7700", "[]:7700", "host:", "host:65536", "host:7x",
                          "host:123456", "host:-1"}) {
    Status s = ParseHostPort(bad, &hp);
    EXPECT_EQ(s.code(), Status::Code::kBadRequest) << bad;
    EXPECT_NE(s.message().find(std::string("'") + bad + "'"), std::string::npos) << s.message();
  }
}

TEST(HostPortTest, NodeIds) {
  EXPECT_TRUE(IsValidNodeId("n1"));
  EXPECT_TRUE(IsValidNodeId("rack-2_node"));
  EXPECT_TRUE(IsValidNodeId(std::string(64, 'a')));
  EXPECT_FALSE(IsValidNodeId(std::string(65, 'a')));
  EXPECT_FALSE(IsValidNodeId(""));
  EXPECT_FALSE(IsValidNodeId("n/1"));
  EXPECT_FALSE(IsValidNodeId("@seed0"));
  EXPECT_FALSE(IsValidNodeId("n 1"));
}

}  // namespace
}  // namespace ringkv
