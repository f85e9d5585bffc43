#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/schemas/echo_generated.h"
#include "natsgw/testdata/nested_generated.h"
#include "natsgw/verified.h"
#include "sdk_test_util.h"

namespace natsgw {
namespace {

using ::natsgw::echo::EchoRequest;
using ::natsgw::testdata::Node;
using ::natsgw::testing::EchoRequestBytes;
using ::natsgw::testing::PayloadOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

// Longer than any small-string buffer, so the std::string holding it owns a
// heap allocation (which is always 8-byte aligned).
constexpr absl::string_view kPayload = "a payload of more than sixteen bytes";

std::string Finished(flatbuffers::FlatBufferBuilder& fbb) {
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

// A chain of `depth` Nodes (the root included), each the `child` of the
// previous one: the verifier's depth reaches `depth` on it.
std::string Chain(int depth) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<Node> node = testdata::CreateNode(fbb, 0, 0, depth);
  for (int i = depth - 1; i > 0; --i) {
    node = testdata::CreateNode(fbb, node, 0, i);
  }
  fbb.Finish(node, testdata::NodeIdentifier());
  return Finished(fbb);
}

// A root with `children` distinct leaf children: 1 + children tables.
std::string Wide(int children) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<Node>> leaves;
  for (int i = 0; i < children; ++i) {
    leaves.push_back(testdata::CreateNode(fbb, 0, 0, i));
  }
  fbb.Finish(testdata::CreateNode(fbb, 0, fbb.CreateVector(leaves), 0),
             testdata::NodeIdentifier());
  return Finished(fbb);
}

// A root whose children vector refers `references` times to one shared leaf:
// a small buffer that makes the verifier visit 1 + references tables.
std::string Dag(int references) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<Node> leaf = testdata::CreateNode(fbb, 0, 0, 7);
  std::vector<flatbuffers::Offset<Node>> refs(references, leaf);
  fbb.Finish(testdata::CreateNode(fbb, 0, fbb.CreateVector(refs), 0),
             testdata::NodeIdentifier());
  return Finished(fbb);
}

// A small tree using every field, as the seed of the hostile-input loop.
std::string Tree() {
  flatbuffers::FlatBufferBuilder fbb;
  auto grandchild =
      testdata::CreateNodeDirect(fbb, 0, nullptr, 3, "grandchild");
  auto child = testdata::CreateNodeDirect(fbb, grandchild, nullptr, 2, "child");
  std::vector<flatbuffers::Offset<Node>> kids;
  for (int i = 0; i < 4; ++i) {
    kids.push_back(testdata::CreateNodeDirect(fbb, 0, nullptr, 10 + i, "kid"));
  }
  fbb.Finish(testdata::CreateNodeDirect(fbb, child, &kids, 1, "root"),
             testdata::NodeIdentifier());
  return Finished(fbb);
}

// Reads every field reachable from `node`; under ASan an out-of-bounds read
// of a buffer that should not have verified fails the test. Returns a value
// depending on everything read, so nothing is optimised away.
uint64_t Walk(const Node* node) {
  if (node == nullptr) return 0;
  uint64_t sum = node->value();
  if (node->name() != nullptr) {
    for (char c : node->name()->string_view()) sum += static_cast<uint8_t>(c);
  }
  sum += Walk(node->child());
  if (node->children() != nullptr) {
    for (const Node* kid : *node->children()) sum += Walk(kid);
  }
  return sum;
}

uint64_t Walk(const EchoRequest* request) {
  uint64_t sum = request->tag();
  for (char c : PayloadOf(*request)) sum += static_cast<uint8_t>(c);
  return sum;
}

// `bytes` copied to an address that is `offset` (1..7) bytes past an 8-byte
// boundary; the view points into `storage`.
absl::string_view Misaligned(absl::string_view bytes, size_t offset,
                             std::string& storage) {
  storage.assign(bytes.size() + 16, '\0');
  char* base = storage.data();
  // Round up to the next 8-byte boundary, then step off it.
  const size_t pad = (8 - reinterpret_cast<uintptr_t>(base) % 8) % 8;
  char* p = base + pad + offset;
  std::copy(bytes.begin(), bytes.end(), p);
  return absl::string_view(p, bytes.size());
}

TEST(VerifiedTest, ValidBufferVerifiesAndReads) {
  const std::string bytes = EchoRequestBytes(kPayload, 42);
  absl::StatusOr<Verified<EchoRequest>> v =
      Verified<EchoRequest>::Verify(bytes, echo::EchoRequestIdentifier());
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)->tag(), 42u);
  EXPECT_EQ(PayloadOf(**v), kPayload);
  EXPECT_EQ(v->get(), &**v);
  EXPECT_EQ(v->bytes(), bytes);
}

TEST(VerifiedTest, VerifyAdoptsAnAlignedStringWithoutCopying) {
  std::string bytes = EchoRequestBytes(kPayload, 1);
  const char* const original = bytes.data();
  ASSERT_TRUE(internal::AlignedBytes::IsAligned(original));
  absl::StatusOr<Verified<EchoRequest>> v =
      Verified<EchoRequest>::Verify(std::move(bytes), "NGEC");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->adopted());
  // The very same heap buffer: no copy was made on the way in.
  EXPECT_EQ(v->bytes().data(), original);
  EXPECT_EQ((*v)->tag(), 1u);
}

TEST(VerifiedTest, FromViewCopies) {
  const std::string bytes = EchoRequestBytes(kPayload, 2);
  absl::StatusOr<Verified<EchoRequest>> v =
      Verified<EchoRequest>::FromView(bytes, "NGEC");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_FALSE(v->adopted());
  EXPECT_NE(v->bytes().data(), bytes.data());
  EXPECT_EQ(v->bytes(), bytes);
  EXPECT_EQ((*v)->tag(), 2u);
}

TEST(VerifiedTest, FromViewAtAMisalignedAddressReadsCorrectly) {
  const std::string bytes = EchoRequestBytes(kPayload, 0x1122334455667788);
  for (size_t offset = 1; offset < 8; ++offset) {
    SCOPED_TRACE(offset);
    std::string storage;
    absl::string_view view = Misaligned(bytes, offset, storage);
    ASSERT_FALSE(internal::AlignedBytes::IsAligned(view.data()));
    absl::StatusOr<Verified<EchoRequest>> v =
        Verified<EchoRequest>::FromView(view, "NGEC");
    ASSERT_TRUE(v.ok()) << v.status();
    // The 8-byte tag is read through a plain pointer: UBSan reports it if
    // the copy is not aligned.
    EXPECT_TRUE(internal::AlignedBytes::IsAligned(v->bytes().data()));
    EXPECT_EQ((*v)->tag(), 0x1122334455667788u);
    EXPECT_EQ(PayloadOf(**v), kPayload);
  }
}

TEST(VerifiedTest, BufferInASmallStringSurvivesMoves) {
  // An EchoRequest with no fields and no identifier is 12 bytes: it lives in
  // std::string's inline buffer, which moves with the object.
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(echo::EchoRequestBuilder(fbb).Finish());
  std::string bytes = Finished(fbb);
  ASSERT_LT(bytes.size(), 16u);
  absl::StatusOr<Verified<EchoRequest>> v =
      Verified<EchoRequest>::Verify(std::move(bytes), "");
  ASSERT_TRUE(v.ok()) << v.status();
  Verified<EchoRequest> a = *std::move(v);
  Verified<EchoRequest> b = std::move(a);
  Verified<EchoRequest> c = b;
  EXPECT_TRUE(internal::AlignedBytes::IsAligned(b.bytes().data()));
  EXPECT_TRUE(internal::AlignedBytes::IsAligned(c.bytes().data()));
  EXPECT_EQ(b->tag(), 0u);
  EXPECT_EQ(b->payload(), nullptr);
  EXPECT_EQ(c->tag(), 0u);
}

TEST(VerifiedTest, CopyAndMoveKeepItReadable) {
  std::optional<Verified<EchoRequest>> original;
  {
    absl::StatusOr<Verified<EchoRequest>> v =
        Verified<EchoRequest>::Verify(EchoRequestBytes(kPayload, 5), "NGEC");
    ASSERT_TRUE(v.ok()) << v.status();
    original.emplace(*std::move(v));
  }
  Verified<EchoRequest> copy = *original;
  EXPECT_NE(copy.bytes().data(), original->bytes().data());
  Verified<EchoRequest> moved = *std::move(original);
  original.reset();
  EXPECT_EQ(copy->tag(), 5u);
  EXPECT_EQ(PayloadOf(*copy), kPayload);
  EXPECT_EQ(moved->tag(), 5u);
  EXPECT_EQ(PayloadOf(*moved), kPayload);

  absl::StatusOr<Verified<EchoRequest>> other =
      Verified<EchoRequest>::Verify(EchoRequestBytes("other", 6), "NGEC");
  ASSERT_TRUE(other.ok()) << other.status();
  Verified<EchoRequest> assigned = *other;
  assigned = copy;  // Copy assignment.
  EXPECT_EQ(assigned->tag(), 5u);
  assigned = *std::move(other);  // Move assignment.
  EXPECT_EQ(assigned->tag(), 6u);
  EXPECT_EQ(PayloadOf(*assigned), "other");
  EXPECT_EQ(copy->tag(), 5u);
}

TEST(VerifiedTest, EmptyIdentifierAcceptsABufferWithoutOne) {
  absl::StatusOr<Verified<EchoRequest>> v = Verified<EchoRequest>::Verify(
      EchoRequestBytes(kPayload, 9, /*file_identifier=*/nullptr), "");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)->tag(), 9u);
  EXPECT_EQ(PayloadOf(**v), kPayload);
}

TEST(VerifiedTest, MissingFileIdentifierIsRejected) {
  absl::StatusOr<Verified<EchoRequest>> v = Verified<EchoRequest>::Verify(
      EchoRequestBytes(kPayload, 9, /*file_identifier=*/nullptr), "NGEC");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("file identifier"));
}

TEST(VerifiedTest, WrongFileIdentifierIsRejected) {
  absl::StatusOr<Verified<EchoRequest>> v = Verified<EchoRequest>::Verify(
      EchoRequestBytes(kPayload, 9, "NGUS"), "NGEC");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("file identifier"));
  EXPECT_THAT(v.status().message(), HasSubstr("NGUS"));
  EXPECT_THAT(v.status().message(), HasSubstr("NGEC"));
}

TEST(VerifiedTest, ExpectedIdentifierOfWrongLengthIsRejected) {
  const std::string bytes = EchoRequestBytes(kPayload, 9);
  for (absl::string_view id : {"NGE", "NGECX", "N"}) {
    SCOPED_TRACE(id);
    absl::StatusOr<Verified<EchoRequest>> v =
        Verified<EchoRequest>::FromView(bytes, id);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(v.status().message(), HasSubstr("file identifier"));
  }
}

TEST(VerifiedTest, EmptyBufferIsMalformed) {
  for (absl::string_view id : {"NGEC", ""}) {
    SCOPED_TRACE(id);
    absl::StatusOr<Verified<EchoRequest>> v =
        Verified<EchoRequest>::Verify("", id);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(v.status().message(), HasSubstr("malformed"));
    v = Verified<EchoRequest>::FromView(absl::string_view(), id);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(v.status().message(), HasSubstr("malformed"));
  }
}

TEST(VerifiedTest, TruncatedBuffersAreRejected) {
  const std::string bytes = EchoRequestBytes(kPayload, 3);
  absl::StatusOr<Verified<EchoRequest>> whole =
      Verified<EchoRequest>::Verify(bytes, "NGEC");
  ASSERT_TRUE(whole.ok()) << whole.status();
  // Everything up to the last payload byte is needed; what follows it, if
  // anything, is alignment padding.
  const size_t needed =
      static_cast<size_t>(PayloadOf(**whole).end() - whole->bytes().data());
  ASSERT_LE(needed, bytes.size());
  for (size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE(n);
    absl::StatusOr<Verified<EchoRequest>> v =
        Verified<EchoRequest>::Verify(bytes.substr(0, n), "NGEC");
    if (n < needed) {
      ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(v.status().message(),
                  AnyOf(HasSubstr("malformed"), HasSubstr("file identifier")));
    } else if (v.ok()) {
      EXPECT_EQ(PayloadOf(**v), kPayload);
    } else {
      EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(VerifiedTest, OversizeIsRejectedNamingTheSizeLimit) {
  const std::string bytes = EchoRequestBytes(kPayload, 4);
  VerifyLimits limits;
  limits.max_size_bytes = bytes.size();
  EXPECT_TRUE(Verified<EchoRequest>::FromView(bytes, "NGEC", limits).ok());
  limits.max_size_bytes = bytes.size() - 1;
  absl::StatusOr<Verified<EchoRequest>> v =
      Verified<EchoRequest>::FromView(bytes, "NGEC", limits);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("size limit"));

  // The default limit (1 MiB) applies without any options.
  std::string big = EchoRequestBytes(std::string((1 << 20) + 1, 'x'), 4);
  v = Verified<EchoRequest>::Verify(std::move(big), "NGEC");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("size limit"));
}

TEST(VerifiedTest, GarbageIsRejected) {
  // A plausible envelope (the right identifier) around nonsense offsets.
  std::string garbage(64, '\xff');
  garbage.replace(4, 4, "NGEC");
  absl::StatusOr<Verified<EchoRequest>> v =
      Verified<EchoRequest>::Verify(garbage, "NGEC");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("malformed"));

  // Text where a FlatBuffer was expected.
  v = Verified<EchoRequest>::Verify(
      "{\"payload\": \"not a flatbuffer at all\"}", "NGEC");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("file identifier"));
  v = Verified<EchoRequest>::Verify(
      "{\"payload\": \"not a flatbuffer at all\"}", "");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("malformed"));
}

TEST(VerifiedTest, DepthLimit) {
  // The default limit is 16 nested tables.
  EXPECT_TRUE(Verified<Node>::Verify(Chain(16), "NGTN").ok());
  absl::StatusOr<Verified<Node>> v = Verified<Node>::Verify(Chain(20), "NGTN");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("depth limit"));
  // Only the rule that was broken is named.
  EXPECT_THAT(v.status().message(), Not(HasSubstr("table limit")));

  VerifyLimits limits;
  limits.max_depth = 4;
  EXPECT_TRUE(Verified<Node>::Verify(Chain(4), "NGTN", limits).ok());
  v = Verified<Node>::Verify(Chain(5), "NGTN", limits);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("depth limit"));

  // Raising the limit admits the deeper buffer, and it reads correctly.
  limits.max_depth = 32;
  v = Verified<Node>::Verify(Chain(20), "NGTN", limits);
  ASSERT_TRUE(v.ok()) << v.status();
  int depth = 0;
  for (const Node* n = v->get(); n != nullptr; n = n->child()) ++depth;
  EXPECT_EQ(depth, 20);
}

TEST(VerifiedTest, VeryDeepBufferIsRejected) {
  // Deeper than FlatBuffers' own default (64): still only INVALID_ARGUMENT.
  absl::StatusOr<Verified<Node>> v = Verified<Node>::Verify(Chain(100), "NGTN");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(VerifiedTest, TableLimit) {
  VerifyLimits limits;
  limits.max_tables = 101;  // The root and 100 children.
  absl::StatusOr<Verified<Node>> v =
      Verified<Node>::Verify(Wide(100), "NGTN", limits);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ((*v)->children()->size(), 100u);
  limits.max_tables = 100;
  v = Verified<Node>::Verify(Wide(100), "NGTN", limits);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("table limit"));
  EXPECT_THAT(v.status().message(), Not(HasSubstr("depth limit")));
}

TEST(VerifiedTest, SharedSubTablesCountEachTimeTheyAreReached) {
  // 10'001 references to one leaf: a 40 KB buffer the verifier must walk
  // 10'002 tables of, one more than the default limit.
  const std::string dag = Dag(10'001);
  ASSERT_LT(dag.size(), size_t{64} << 10);
  absl::StatusOr<Verified<Node>> v = Verified<Node>::Verify(dag, "NGTN");
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("table limit"));
  EXPECT_THAT(v.status().message(), Not(HasSubstr("depth limit")));
  EXPECT_TRUE(Verified<Node>::Verify(Dag(9'999), "NGTN").ok());
}

TEST(VerifiedTest, BothLimitsAreNamed) {
  VerifyLimits limits;
  limits.max_tables = 5;
  absl::StatusOr<Verified<Node>> v =
      Verified<Node>::Verify(Chain(20), "NGTN", limits);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("depth limit"));
  EXPECT_THAT(v.status().message(), HasSubstr("table limit"));
}

TEST(VerifiedTest, ValidateVerifyLimitsRejectsNonPositiveLimits) {
  EXPECT_TRUE(ValidateVerifyLimits(VerifyLimits{}).ok());
  struct Case {
    VerifyLimits limits;
    absl::string_view field;
  };
  std::vector<Case> cases = {
      {{.max_depth = 0}, "max_depth"},
      {{.max_depth = -1}, "max_depth"},
      {{.max_tables = 0}, "max_tables"},
      {{.max_tables = -10}, "max_tables"},
      {{.max_size_bytes = 0}, "max_size_bytes"},
  };
  const std::string bytes = EchoRequestBytes(kPayload, 1);
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    absl::Status s = ValidateVerifyLimits(c.limits);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(c.field));
    // Verification with unusable limits fails instead of misbehaving.
    EXPECT_EQ(Verified<EchoRequest>::FromView(bytes, "NGEC", c.limits)
                  .status()
                  .code(),
              absl::StatusCode::kInvalidArgument);
  }
}

// Applies `count` fixed-seed random mutations to `seed` and checks that each
// result either verifies (and then reads without fault) or is rejected with
// INVALID_ARGUMENT naming a rule. Verify and FromView (from a misaligned
// copy) must agree. Returns {accepted, rejected}.
template <class T>
std::pair<int, int> Mutate(const std::string& seed, absl::string_view id,
                           int count, uint32_t rng_seed) {
  std::mt19937 rng(rng_seed);
  auto uniform = [&](size_t n) {
    return static_cast<size_t>(
        std::uniform_int_distribution<size_t>(0, n - 1)(rng));
  };
  int accepted = 0;
  int rejected = 0;
  for (int i = 0; i < count; ++i) {
    std::string bytes = seed;
    const size_t kind = uniform(4);
    if (kind == 0 || kind == 2) {
      // A few bytes set to random values.
      for (size_t j = 0, n = 1 + uniform(4); j < n; ++j) {
        bytes[uniform(bytes.size())] = static_cast<char>(uniform(256));
      }
    }
    if (kind == 1) {
      // One aligned 32-bit word set to a small value: offsets and lengths
      // that point somewhere plausible are the interesting hostile inputs.
      const size_t word = uniform(bytes.size() / 4) * 4;
      const uint32_t value = static_cast<uint32_t>(uniform(2 * bytes.size()));
      std::memcpy(&bytes[word], &value, sizeof(value));
    }
    if (kind == 2 || kind == 3) bytes.resize(uniform(bytes.size()));

    std::string storage;
    absl::string_view misaligned = Misaligned(bytes, 1 + uniform(7), storage);
    absl::StatusOr<Verified<T>> from_view =
        Verified<T>::FromView(misaligned, id);
    absl::StatusOr<Verified<T>> v = Verified<T>::Verify(bytes, id);
    EXPECT_EQ(v.ok(), from_view.ok()) << "mutation " << i;
    if (v.ok()) {
      ++accepted;
      EXPECT_EQ(Walk(v->get()), Walk(from_view->get())) << "mutation " << i;
    } else {
      ++rejected;
      EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument)
          << "mutation " << i << ": " << v.status();
      EXPECT_THAT(v.status().message(),
                  AnyOf(HasSubstr("malformed"), HasSubstr("file identifier"),
                        HasSubstr("depth limit"), HasSubstr("table limit")))
          << "mutation " << i;
    }
  }
  return {accepted, rejected};
}

TEST(VerifiedHostileInputTest, MutatedTreesVerifyOrAreRejected) {
  const std::string seed = Tree();
  ASSERT_TRUE(Verified<Node>::Verify(seed, "NGTN").ok());
  auto [accepted, rejected] = Mutate<Node>(seed, "NGTN", 3000, 20240611);
  // Both outcomes occur, so the loop really exercises both paths.
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
}

TEST(VerifiedHostileInputTest, MutatedEchoRequestsVerifyOrAreRejected) {
  const std::string seed = EchoRequestBytes(kPayload, 77);
  auto [accepted, rejected] = Mutate<EchoRequest>(seed, "NGEC", 2000, 7);
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace natsgw
