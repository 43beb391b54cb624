#include "server/node_options.h"

#include <gtest/gtest.h>

namespace ringkv {
namespace {

TEST(NodeOptionsTest, DefaultsForASingleNode) {
  NodeOptions o;
  ASSERT_TRUE(FinalizeNodeOptions(&o).ok());
  EXPECT_EQ(o.data_dir, "./data/n1");
  ASSERT_EQ(o.cluster.size(), 1u);
  EXPECT_EQ(o.cluster[0], (Member{"n1", "127.0.0.1:7700"}));
  EXPECT_EQ(o.replicas, 1);
  EXPECT_EQ(o.read_quorum, 1);
  EXPECT_EQ(o.write_quorum, 1);
}

TEST(NodeOptionsTest, ClusterDefaults) {
  NodeOptions o;
  ASSERT_TRUE(ParseClusterSpec("n1=127.0.0.1:1,n2=127.0.0.1:2,n3=h:3,n4=h:4", &o.cluster).ok());
  ASSERT_TRUE(FinalizeNodeOptions(&o).ok());
  EXPECT_EQ(o.replicas, 3);
  EXPECT_EQ(o.read_quorum, 2);
  EXPECT_EQ(o.write_quorum, 2);
}

TEST(NodeOptionsTest, NodeIds) {
  EXPECT_TRUE(IsValidNodeId("a-B_9"));
  EXPECT_TRUE(IsValidNodeId(std::string(64, 'x')));
  EXPECT_FALSE(IsValidNodeId(std::string(65, 'x')));
  EXPECT_FALSE(IsValidNodeId(""));
  EXPECT_FALSE(IsValidNodeId("bad id"));
  EXPECT_FALSE(IsValidNodeId("n.1"));
}

TEST(NodeOptionsTest, BadClusterSpecs) {
  std::vector<Member> m;
  EXPECT_FALSE(ParseClusterSpec("", &m).ok());
  EXPECT_FALSE(ParseClusterSpec("n1", &m).ok());
  EXPECT_FALSE(ParseClusterSpec("n1=host", &m).ok());
  EXPECT_FALSE(ParseClusterSpec("n1=host:99999", &m).ok());
  EXPECT_FALSE(ParseClusterSpec("n1=h:1,n1=h:2", &m).ok());
  EXPECT_FALSE(ParseClusterSpec("bad id=h:1", &m).ok());
}

TEST(NodeOptionsTest, EachBadFlagNamesItself) {
  auto fails_with = [](NodeOptions o, std::string_view flag) {
    Status s = FinalizeNodeOptions(&o);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(flag), std::string::npos) << s.message();
  };
  NodeOptions o;
  o.partitions = 48;
  fails_with(o, "--partitions");
  o = NodeOptions();
  o.partitions = 0;
  fails_with(o, "--partitions");
  o = NodeOptions();
  o.node_id = "x y";
  fails_with(o, "--node-id");
  o = NodeOptions();
  o.listen = "nonsense";
  fails_with(o, "--listen");
  o = NodeOptions();
  o.replicas = 2;
  fails_with(o, "--replicas");
  o = NodeOptions();
  o.read_quorum = 2;
  fails_with(o, "--read-quorum");
  o = NodeOptions();
  ASSERT_TRUE(ParseClusterSpec("n2=h:1", &o.cluster).ok());
  fails_with(o, "--cluster");
  o = NodeOptions();
  o.max_connections = 0;
  fails_with(o, "--max-connections");
  o.max_connections = kMaxConnections + 1;
  fails_with(o, "--max-connections");
  o.max_connections = kMaxConnections;
  EXPECT_TRUE(FinalizeNodeOptions(&o).ok());
  EXPECT_EQ(NodeOptions().max_connections, 10000u);
}

}  // namespace
}  // namespace ringkv
