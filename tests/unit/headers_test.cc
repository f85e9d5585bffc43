#include "natsgw/headers.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

TEST(HeadersTest, GetIsCaseInsensitiveAndKeepsTheWrittenCase) {
  Headers h;
  h.Add("Traceparent", "00-aa");
  EXPECT_THAT(h.Get("traceparent"), Optional(absl::string_view("00-aa")));
  EXPECT_THAT(h.Get("TRACEPARENT"), Optional(absl::string_view("00-aa")));
  EXPECT_EQ(h.begin()->key, "Traceparent");
  EXPECT_FALSE(h.Get("tracestate").has_value());
}

TEST(HeadersTest, AddKeepsRepeatedKeysInOrder) {
  Headers h;
  h.Add("Accept", "a");
  h.Add("accept", "b");
  EXPECT_THAT(h.GetAll("ACCEPT"), ElementsAre("a", "b"));
  EXPECT_EQ(h.size(), 2u);
}

TEST(HeadersTest, SetReplacesEveryCaseVariant) {
  Headers h{{"X-A", "1"}, {"x-a", "2"}, {"Other", "3"}};
  h.Set("X-a", "9");
  EXPECT_THAT(h.GetAll("x-a"), ElementsAre("9"));
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.Remove("OTHER"), 1u);
  EXPECT_EQ(h.Remove("missing"), 0u);
}

}  // namespace
}  // namespace natsgw
