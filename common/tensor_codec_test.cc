#include "common/tensor_codec.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram {
namespace {

using ::testing::HasSubstr;

TEST(TensorCodecTest, RoundTripsEveryDType) {
  for (torch::ScalarType type :
       {torch::kByte, torch::kChar, torch::kShort, torch::kInt, torch::kLong, torch::kHalf,
        torch::kBFloat16, torch::kFloat, torch::kDouble, torch::kBool}) {
    const torch::Tensor original = (torch::arange(24) % 3).to(type).reshape({2, 3, 4});
    v1::Tensor proto;
    ASSERT_TRUE(EncodeTensor(original, &proto).ok()) << c10::toString(type);
    EXPECT_EQ(proto.data().size(), 24 * original.element_size());
    auto decoded = DecodeTensor(proto);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->scalar_type(), type);
    EXPECT_EQ(decoded->sizes(), original.sizes());
    EXPECT_TRUE(torch::equal(*decoded, original)) << c10::toString(type);
  }
}

TEST(TensorCodecTest, NonContiguousAndScalarTensors) {
  const torch::Tensor base = torch::arange(12, torch::kFloat).reshape({3, 4});
  v1::Tensor proto;
  ASSERT_TRUE(EncodeTensor(base.t(), &proto).ok());
  EXPECT_THAT(proto.shape(), ::testing::ElementsAre(4, 3));
  EXPECT_TRUE(torch::equal(DecodeTensor(proto).value(), base.t()));

  ASSERT_TRUE(EncodeTensor(torch::tensor(3.5), &proto).ok());
  EXPECT_EQ(proto.shape_size(), 0);
  EXPECT_EQ(DecodeTensor(proto).value().item<float>(), 3.5f);
}

TEST(TensorCodecTest, ViewAliasesTheMessageAndCopyDoesNot) {
  v1::Tensor proto;
  ASSERT_TRUE(EncodeTensor(torch::ones({4}, torch::kFloat), &proto).ok());
  const torch::Tensor view = DecodeTensorView(proto).value();
  const torch::Tensor copy = DecodeTensor(proto).value();
  EXPECT_EQ(view.data_ptr(), static_cast<const void*>(proto.data().data()));
  EXPECT_NE(copy.data_ptr(), static_cast<const void*>(proto.data().data()));
}

TEST(TensorCodecTest, TruncatedDataIsInvalidArgument) {
  v1::Tensor proto;
  ASSERT_TRUE(EncodeTensor(torch::zeros({10, 10, 4}, torch::kByte), &proto).ok());
  proto.mutable_data()->resize(399);
  const auto decoded = DecodeTensor(proto, "observation");
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("observation"));
  EXPECT_THAT(decoded.status().message(), HasSubstr("needs 400 bytes"));
  EXPECT_THAT(decoded.status().message(), HasSubstr("truncated"));
  proto.mutable_data()->resize(401);
  EXPECT_EQ(DecodeTensor(proto).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TensorCodecTest, BadDTypeAndShapesAreInvalidArgument) {
  v1::Tensor proto;
  proto.add_shape(1);
  proto.set_data(std::string(4, '\0'));
  EXPECT_EQ(DecodeTensor(proto).status().code(), absl::StatusCode::kInvalidArgument);
  proto.set_dtype(static_cast<v1::DType>(999));
  EXPECT_EQ(DecodeTensor(proto).status().code(), absl::StatusCode::kInvalidArgument);

  proto.set_dtype(v1::DTYPE_FLOAT32);
  proto.set_shape(0, -1);
  EXPECT_THAT(DecodeTensor(proto).status().message(), HasSubstr("negative"));

  // Overflowing element counts must be caught before any allocation.
  proto.clear_shape();
  for (int i = 0; i < 4; ++i) proto.add_shape(int64_t{1} << 20);
  EXPECT_THAT(DecodeTensor(proto).status().message(), HasSubstr("too large"));
}

TEST(TensorCodecTest, SignatureMismatchNamesShapes) {
  v1::Tensor proto;
  ASSERT_TRUE(EncodeTensor(torch::zeros({10, 10, 4}, torch::kByte), &proto).ok());
  EXPECT_TRUE(CheckSignature(proto, {v1::DTYPE_UINT8, {10, 10, 4}}).ok());
  EXPECT_TRUE(CheckSignature(proto, {v1::DTYPE_UNSPECIFIED, {-1, 10, -1}}).ok());
  const absl::Status shape = CheckSignature(proto, {v1::DTYPE_UINT8, {10, 10, 10}}, "observation");
  EXPECT_EQ(shape.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shape.message(),
              HasSubstr("observation shape [10,10,4] does not match signature [10,10,10]"));
  const absl::Status dtype = CheckSignature(proto, {v1::DTYPE_FLOAT32, {10, 10, 4}});
  EXPECT_THAT(dtype.message(),
              HasSubstr("DTYPE_UINT8 does not match signature dtype DTYPE_FLOAT32"));
}

TEST(TensorCodecTest, EncodeRawChecksLength) {
  const std::vector<uint8_t> bytes(16, 1);
  v1::Tensor proto;
  ASSERT_TRUE(EncodeRaw(v1::DTYPE_FLOAT32, {2, 2}, bytes, &proto).ok());
  EXPECT_EQ(DecodeTensor(proto).value().sizes(), torch::IntArrayRef({2, 2}));
  EXPECT_EQ(EncodeRaw(v1::DTYPE_FLOAT32, {2, 3}, bytes, &proto).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeRaw(v1::DTYPE_UNSPECIFIED, {16}, bytes, &proto).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TensorCodecTest, UnsupportedTorchTypeIsInvalidArgument) {
  v1::Tensor proto;
  EXPECT_EQ(EncodeTensor(torch::zeros({2}, torch::kComplexFloat), &proto).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace engram
