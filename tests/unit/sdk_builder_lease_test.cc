#include <cstdint>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/builder_lease.h"
#include "natsgw/schemas/echo_generated.h"
#include "natsgw/verified.h"
#include "sdk_test_util.h"

namespace natsgw {
namespace {

using ::natsgw::echo::EchoRequest;
using ::natsgw::testing::PayloadOf;
using ::testing::HasSubstr;

// The thread's builder is thread_local state that outlives a test; running
// each test on a new thread starts it from a fresh, never-leased builder.
void OnFreshThread(const std::function<void()>& body) {
  std::thread(body).join();
}

// Builds and finishes an EchoRequest in `fbb`.
void BuildEcho(flatbuffers::FlatBufferBuilder& fbb, absl::string_view payload,
               uint64_t tag) {
  auto data = fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()),
                               payload.size());
  fbb.Finish(echo::CreateEchoRequest(fbb, data, tag),
             echo::EchoRequestIdentifier());
}

// One past the last byte of the builder's allocation. FlatBufferBuilder
// fills its buffer from the end, so the end stays put while the same
// allocation is reused and moves when the builder gets a new one. Only
// meaningful once something has been built.
const uint8_t* BufferEnd(const flatbuffers::FlatBufferBuilder& fbb) {
  return fbb.GetCurrentBufferPointer() + fbb.GetSize();
}

TEST(BuilderLeaseTest, SequentialLeasesReuseTheThreadsBuilder) {
  OnFreshThread([] {
    const flatbuffers::FlatBufferBuilder* first = nullptr;
    {
      BuilderLease lease;
      EXPECT_TRUE(lease.shared());
      first = &lease.builder();
      BuildEcho(lease.builder(), "first", 1);
    }
    {
      BuilderLease lease;
      EXPECT_TRUE(lease.shared());
      EXPECT_EQ(&lease.builder(), first);
      // Clear()ed: the previous message is gone.
      EXPECT_EQ(lease.builder().GetSize(), 0u);
    }
  });
}

TEST(BuilderLeaseTest, BytesIsTheFinishedBuffer) {
  OnFreshThread([] {
    BuilderLease lease;
    BuildEcho(lease.builder(), "hello", 7);
    EXPECT_TRUE(flatbuffers::BufferHasIdentifier(lease.bytes().data(), "NGEC"));
    absl::StatusOr<Verified<EchoRequest>> v =
        Verified<EchoRequest>::FromView(lease.bytes(), "NGEC");
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ((*v)->tag(), 7u);
    EXPECT_EQ(PayloadOf(**v), "hello");
  });
}

TEST(BuilderLeaseTest, NestedLeaseGetsAPrivateBuilderAndLeavesTheOuterIntact) {
  OnFreshThread([] {
    const flatbuffers::FlatBufferBuilder* shared = nullptr;
    {
      BuilderLease outer;
      ASSERT_TRUE(outer.shared());
      shared = &outer.builder();
      flatbuffers::FlatBufferBuilder& fbb = outer.builder();
      // The outer message is half built when the nested lease starts.
      const std::string payload = "outer payload";
      auto data = fbb.CreateVector(
          reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
      {
        BuilderLease inner;
        EXPECT_FALSE(inner.shared());
        EXPECT_NE(&inner.builder(), shared);
        EXPECT_EQ(inner.builder().GetSize(), 0u);
        BuildEcho(inner.builder(), "inner payload, longer than the outer", 2);
        {
          // Still leased: a second nested level is private as well.
          BuilderLease innermost;
          EXPECT_FALSE(innermost.shared());
          EXPECT_NE(&innermost.builder(), &inner.builder());
          BuildEcho(innermost.builder(), "x", 3);
        }
        absl::StatusOr<Verified<EchoRequest>> v =
            Verified<EchoRequest>::FromView(inner.bytes(), "NGEC");
        ASSERT_TRUE(v.ok()) << v.status();
        EXPECT_EQ((*v)->tag(), 2u);
      }
      {
        // The end of a nested lease does not hand the outer one's builder
        // out again.
        BuilderLease again;
        EXPECT_FALSE(again.shared());
      }
      fbb.Finish(echo::CreateEchoRequest(fbb, data, 1),
                 echo::EchoRequestIdentifier());
      absl::StatusOr<Verified<EchoRequest>> v =
          Verified<EchoRequest>::FromView(outer.bytes(), "NGEC");
      ASSERT_TRUE(v.ok()) << v.status();
      EXPECT_EQ((*v)->tag(), 1u);
      EXPECT_EQ(PayloadOf(**v), payload);
    }
    BuilderLease after;
    EXPECT_TRUE(after.shared());
    EXPECT_EQ(&after.builder(), shared);
  });
}

TEST(BuilderLeaseTest, LeasesOnDifferentThreadsAreIndependent) {
  OnFreshThread([] {
    BuilderLease mine;
    ASSERT_TRUE(mine.shared());
    BuildEcho(mine.builder(), "mine", 1);
    const std::string before(mine.bytes());
    // While this thread holds its lease, another thread gets its own shared
    // builder, not a private one and not this one.
    std::thread([&] {
      BuilderLease theirs;
      EXPECT_TRUE(theirs.shared());
      EXPECT_NE(&theirs.builder(), &mine.builder());
      BuildEcho(theirs.builder(), "theirs", 2);
    }).join();
    EXPECT_EQ(mine.bytes(), before);
  });
}

TEST(BuilderLeaseTest, BuilderWithinTheLimitIsRetained) {
  OnFreshThread([] {
    const uint8_t* end = nullptr;
    {
      BuilderLease lease;
      BuildEcho(lease.builder(),
                std::string(BuilderLease::kMaxRetainedBytes / 2, 'x'), 1);
      ASSERT_LE(lease.builder().GetSize(), BuilderLease::kMaxRetainedBytes);
      end = BufferEnd(lease.builder());
    }
    BuilderLease lease;
    BuildEcho(lease.builder(), "small", 2);
    EXPECT_EQ(BufferEnd(lease.builder()), end);
  });
}

TEST(BuilderLeaseTest, BuilderGrownBeyondTheLimitIsReleased) {
  OnFreshThread([] {
    const uint8_t* end = nullptr;
    {
      BuilderLease lease;
      BuildEcho(lease.builder(),
                std::string(BuilderLease::kMaxRetainedBytes + 1, 'x'), 1);
      ASSERT_GT(lease.builder().GetSize(), BuilderLease::kMaxRetainedBytes);
      end = BufferEnd(lease.builder());
    }
    BuilderLease lease;
    EXPECT_TRUE(lease.shared());
    BuildEcho(lease.builder(), "small", 2);
    // A new (small) allocation: the multi-megabyte one was freed.
    EXPECT_NE(BufferEnd(lease.builder()), end);
    absl::StatusOr<Verified<EchoRequest>> v =
        Verified<EchoRequest>::FromView(lease.bytes(), "NGEC");
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(PayloadOf(**v), "small");
  });
}

TEST(FinishWithIdentifierTest, FinishesWithTheIdentifier) {
  flatbuffers::FlatBufferBuilder fbb;
  auto root = echo::CreateEchoRequest(fbb, 0, 11);
  // A view that is not NUL-terminated after its 4 characters.
  const absl::string_view id = absl::string_view("NGECxyz").substr(0, 4);
  ASSERT_TRUE(internal::FinishWithIdentifier(fbb, root.o, id, "test").ok());
  const std::string bytes(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                          fbb.GetSize());
  absl::StatusOr<Verified<EchoRequest>> v =
      Verified<EchoRequest>::Verify(bytes, "NGEC");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)->tag(), 11u);
}

TEST(FinishWithIdentifierTest, RejectsANullRoot) {
  flatbuffers::FlatBufferBuilder fbb;
  absl::Status s =
      internal::FinishWithIdentifier(fbb, 0, "NGEC", "reply of Echo.Echo");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("reply of Echo.Echo"));
  EXPECT_THAT(s.message(), HasSubstr("null"));
}

TEST(FinishWithIdentifierTest, RejectsAnIdentifierOfTheWrongLength) {
  for (absl::string_view id : {"", "NGE", "NGECX"}) {
    SCOPED_TRACE(id);
    flatbuffers::FlatBufferBuilder fbb;
    auto root = echo::CreateEchoRequest(fbb, 0, 1);
    const size_t size = fbb.GetSize();
    absl::Status s =
        internal::FinishWithIdentifier(fbb, root.o, id, "request of X");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("request of X"));
    EXPECT_THAT(s.message(), HasSubstr("4 characters"));
    // Nothing was finished.
    EXPECT_EQ(fbb.GetSize(), size);
  }
}

}  // namespace
}  // namespace natsgw
