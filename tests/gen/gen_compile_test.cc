// The code natsgw-gen generates compiles and does what its comments say,
// without a server: descriptors carry the schema's facts, a ServiceBase
// subclass becomes a Services API configuration whose endpoints dispatch to
// the overridden methods, and subject prefixes can be overridden.
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "flatbuffers/flatbuffers.h"
#include "flatbuffers/idl.h"
#include "flatbuffers/reflection.h"
#include "gen_test/inventory_natsgw.h"
#include "gen_test/inventory_types_natsgw.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/builder_lease.h"
#include "natsgw/typed_service.h"
#include "natsgw/verified.h"

namespace natsgw {
namespace {

using ::acme::inventory::AuditMethods;
using ::acme::inventory::ReserveReply;
using ::acme::inventory::ReserveRequest;
using ::acme::inventory::StockMethods;
using ::acme::types::ItemRef;
using ::acme::types::Level;
using ::testing::ElementsAre;
using ::testing::Pair;

// Descriptors are compile-time constants.
static_assert(StockMethods::kGetLevel.idempotent);
static_assert(!StockMethods::kReserve.idempotent);
static_assert(StockMethods::kService.default_prefix == "stock");
static_assert(AuditMethods::kRecord.file_identifier == "INVT");

TEST(GeneratedDescriptorsTest, NameTheSchemaFacts) {
  const MethodDescriptor& m = StockMethods::kGetLevel;
  EXPECT_EQ(m.service, "Stock");
  EXPECT_EQ(m.method, "GetLevel");
  EXPECT_EQ(m.full_service_name, "acme.inventory.Stock");
  // Types from the included schema keep their own namespace.
  EXPECT_EQ(m.request_type, "acme.types.ItemRef");
  EXPECT_EQ(m.response_type, "acme.types.Level");
  // Payloads carry the identifier of the schema that declares the service.
  EXPECT_EQ(m.file_identifier, "INVT");
  EXPECT_EQ(m.schema_file, "inventory.fbs");
  EXPECT_EQ(MethodSubject(m.default_prefix, m.method), "stock.GetLevel");
  EXPECT_EQ(StockMethods::kService.full_name, "acme.inventory.Stock");
  EXPECT_EQ(AuditMethods::kService.default_prefix, "audit");
}

// Implements Stock; counts calls so the tests see the dispatch.
class FakeStock : public ::acme::inventory::StockServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<Level>> GetLevel(
      const ItemRef& request, ServerContext& ctx) override {
    ++get_level_calls;
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    return ::acme::types::CreateLevelDirect(fbb, request.sku()->c_str(), 42);
  }
  absl::StatusOr<flatbuffers::Offset<ReserveReply>> Reserve(
      const ReserveRequest& request, ServerContext& ctx) override {
    ++reserve_calls;
    return absl::FailedPreconditionError("out of stock");
  }

  int get_level_calls = 0;
  int reserve_calls = 0;
};

Message RequestOf(
    absl::string_view subject,
    absl::FunctionRef<void(flatbuffers::FlatBufferBuilder&)> build) {
  BuilderLease lease;
  build(lease.builder());
  Message m;
  m.subject = std::string(subject);
  m.data = std::string(lease.bytes());
  m.trace = TraceContext::NewRoot();
  return m;
}

TEST(GeneratedServiceBaseTest, ConfigServesEveryMethodWithMetadata) {
  FakeStock stock;
  TypedServiceOptions options;
  options.version = "2.1.0";
  ServiceConfig config = stock.MakeServiceConfig(options);
  EXPECT_EQ(config.name, "stock");
  EXPECT_EQ(config.version, "2.1.0");
  EXPECT_EQ(config.queue_group, "q");
  EXPECT_TRUE(ValidateServiceConfig(config).ok());
  ASSERT_EQ(config.endpoints.size(), 2u);
  EXPECT_EQ(config.endpoints[0].name, "GetLevel");
  EXPECT_EQ(config.endpoints[0].subject, "stock.GetLevel");
  EXPECT_EQ(config.endpoints[1].name, "Reserve");
  EXPECT_EQ(config.endpoints[1].subject, "stock.Reserve");
  EXPECT_THAT(config.endpoints[0].metadata,
              ElementsAre(Pair("fbs.file_identifier", "INVT"),
                          Pair("fbs.request_type", "acme.types.ItemRef"),
                          Pair("fbs.response_type", "acme.types.Level"),
                          Pair("fbs.schema", "inventory.fbs")));
}

// The binary schema in the descriptor: one per file, self-contained (the
// included types are in it), and (idempotent) survives.
TEST(GeneratedDescriptorsTest, CarryTheBinarySchema) {
  const absl::string_view bfbs = StockMethods::kService.schema_bfbs;
  ASSERT_GT(bfbs.size(), 8u);
  EXPECT_EQ(bfbs.data(), AuditMethods::kService.schema_bfbs.data());
  EXPECT_EQ(bfbs.substr(4, 4), "BFBS");
  const std::string aligned(bfbs);
  flatbuffers::Verifier verifier(
      reinterpret_cast<const uint8_t*>(aligned.data()), aligned.size());
  ASSERT_TRUE(reflection::VerifySchemaBuffer(verifier));
  flatbuffers::Parser parser;
  ASSERT_TRUE(parser.Deserialize(
      reinterpret_cast<const uint8_t*>(aligned.data()), aligned.size()));
  EXPECT_EQ(parser.file_identifier_, "INVT");
  EXPECT_NE(parser.LookupStruct("acme.types.ItemRef"), nullptr);
  EXPECT_NE(parser.LookupStruct("acme.inventory.ReserveRequest"), nullptr);
  const flatbuffers::ServiceDef* stock =
      parser.services_.Lookup("acme.inventory.Stock");
  ASSERT_NE(stock, nullptr);
  const flatbuffers::RPCCall* get_level = stock->calls.Lookup("GetLevel");
  ASSERT_NE(get_level, nullptr);
  EXPECT_NE(get_level->attributes.Lookup("idempotent"), nullptr);
  EXPECT_EQ(stock->calls.Lookup("Reserve")->attributes.Lookup("idempotent"),
            nullptr);

  // Announced as service metadata.
  FakeStock impl;
  ServiceConfig config = impl.MakeServiceConfig();
  ASSERT_EQ(config.metadata.count("fbs.bfbs"), 1u);
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(config.metadata["fbs.bfbs"], &decoded));
  EXPECT_EQ(decoded, bfbs);
  EXPECT_TRUE(ValidateServiceConfig(config).ok());
}

TEST(GeneratedServiceBaseTest, SubjectPrefixOverrideForTenants) {
  FakeStock stock;
  TypedServiceOptions options;
  options.subject_prefix = "tenant1.stock";
  ServiceConfig config = stock.MakeServiceConfig(options);
  ASSERT_EQ(config.endpoints.size(), 2u);
  EXPECT_EQ(config.endpoints[0].subject, "tenant1.stock.GetLevel");
  EXPECT_EQ(config.endpoints[1].subject, "tenant1.stock.Reserve");
  // The Services API name stays the service's, so `nats micro ls` groups
  // the tenants' instances under one name.
  EXPECT_EQ(config.name, "stock");
}

TEST(GeneratedServiceBaseTest, EndpointsDispatchToTheOverriddenMethods) {
  FakeStock stock;
  ServiceConfig config = stock.MakeServiceConfig();
  ASSERT_EQ(config.endpoints.size(), 2u);

  Message get =
      RequestOf("stock.GetLevel", [](flatbuffers::FlatBufferBuilder& fbb) {
        fbb.Finish(::acme::types::CreateItemRefDirect(fbb, "sku-1"), "INVT");
      });
  absl::StatusOr<Reply> reply = config.endpoints[0].handler(get);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(stock.get_level_calls, 1);
  absl::StatusOr<Verified<Level>> level =
      Verified<Level>::Verify(reply->data, "INVT");
  ASSERT_TRUE(level.ok()) << level.status();
  EXPECT_EQ((*level)->sku()->str(), "sku-1");
  EXPECT_EQ((*level)->on_hand(), 42);

  Message reserve =
      RequestOf("stock.Reserve", [](flatbuffers::FlatBufferBuilder& fbb) {
        fbb.Finish(
            ::acme::inventory::CreateReserveRequestDirect(fbb, "sku-1", 3),
            "INVT");
      });
  absl::StatusOr<Reply> refused = config.endpoints[1].handler(reserve);
  EXPECT_EQ(stock.reserve_calls, 1);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(), "out of stock");
}

TEST(GeneratedServiceBaseTest, PayloadOfAnotherContractNeverReachesAMethod) {
  FakeStock stock;
  ServiceConfig config = stock.MakeServiceConfig();
  // A valid ItemRef, but finished with the types schema's own identifier
  // instead of the service's.
  Message wrong =
      RequestOf("stock.GetLevel", [](flatbuffers::FlatBufferBuilder& fbb) {
        fbb.Finish(::acme::types::CreateItemRefDirect(fbb, "sku-1"), "ATYP");
      });
  absl::StatusOr<Reply> reply = config.endpoints[0].handler(wrong);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(reply.status().message()),
              ::testing::HasSubstr("file identifier"));
  EXPECT_EQ(stock.get_level_calls, 0);
}

TEST(GeneratedServiceBaseTest, UnusableOptionsAreRejectedBeforeServing) {
  FakeStock stock;
  TypedServiceOptions options;
  options.interceptors.push_back(nullptr);
  // Start() validates before touching the connection, so a Connection is
  // not needed to see the error: ValidateTypedServiceOptions is what it runs.
  EXPECT_EQ(ValidateTypedServiceOptions(options).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace natsgw
