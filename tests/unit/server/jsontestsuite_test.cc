// Feeds the JSONTestSuite parsing corpus to the node as put values: y_ files
// must be accepted and read back equal, n_ files rejected with bad_request, and
// i_ files answered either way without a crash.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/unit/server/node_fixture.h"

namespace ringkv {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class JsonTestSuite : public NodeFixture {
 protected:
  void SetUp() override {
    NodeFixture::SetUp();
    OpenNode();
  }
  static std::string ReadFile(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // The value goes first and the rest after it, so that a truncated document
  // cannot be completed by the request's own closing characters.
  json PutRaw(const std::string& key, const std::string& value_text) {
    return Parse(CallRaw("{\"op\":\"put\",\"value\":" + value_text + ",\"key\":" + key + "}"));
  }
};

TEST_F(JsonTestSuite, Corpus) {
  fs::path dir = fs::path(RINGKV_SHARED_DIR) / "testdata/jsontestsuite/test_parsing";
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  int accepted = 0, rejected = 0, indifferent = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    std::string text = ReadFile(entry.path());
    std::string key = json(name).dump();
    json resp = PutRaw(key, text);
    SCOPED_TRACE(name);
    if (name.starts_with("y_")) {
      ASSERT_EQ(resp["ok"], true) << resp;
      json get = Call({{"op", "get"}, {"key", name}});
      ASSERT_EQ(get["found"], true);
      EXPECT_EQ(get["value"], json::parse(text));
      ++accepted;
    } else if (name.starts_with("n_")) {
      EXPECT_EQ(ErrorCode(resp), "bad_request") << resp;
      ++rejected;
    } else {
      EXPECT_TRUE(resp.contains("ok")) << resp;
      ++indifferent;
    }
    // The node keeps serving after every file.
    ASSERT_EQ(Call({{"op", "ping"}})["ok"], true);
  }
  EXPECT_EQ(accepted, 95);
  EXPECT_EQ(rejected, 188);
  EXPECT_EQ(indifferent, 35);
}

}  // namespace
}  // namespace ringkv
