#include "replay_server/frame_store.h"

#include "gtest/gtest.h"

namespace engram::replay {
namespace {

v1::Tensor Frame(char fill, int bytes = 400) {
  v1::Tensor t;
  t.set_dtype(v1::DTYPE_UINT8);
  t.add_shape(bytes);
  t.set_data(std::string(bytes, fill));
  return t;
}

TEST(FrameStoreTest, IdenticalFramesAreStoredOnce) {
  FrameStore store;
  const uint32_t a = store.Acquire(Frame('a'));
  const uint32_t b = store.Acquire(Frame('a'));
  const uint32_t c = store.Acquire(Frame('c'));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(store.frames(), 2);
  EXPECT_EQ(store.bytes(), 800);
  EXPECT_EQ(store.refs(a), 2);
}

TEST(FrameStoreTest, SameBytesDifferentShapeOrDTypeAreDifferentFrames) {
  FrameStore store;
  v1::Tensor flat = Frame('x', 8);
  v1::Tensor square = flat;
  square.clear_shape();
  square.add_shape(2);
  square.add_shape(4);
  v1::Tensor as_int = flat;
  as_int.set_dtype(v1::DTYPE_INT8);
  EXPECT_NE(store.Acquire(flat), store.Acquire(square));
  EXPECT_NE(store.Acquire(flat), store.Acquire(as_int));
  EXPECT_EQ(store.frames(), 3);
}

TEST(FrameStoreTest, ReleaseFreesAtZeroAndSlotsAreReused) {
  FrameStore store;
  const uint32_t a = store.Acquire(Frame('a'));
  store.Acquire(Frame('a'));
  store.Release(a);
  EXPECT_EQ(store.frames(), 1);
  store.Release(a);
  EXPECT_EQ(store.frames(), 0);
  EXPECT_EQ(store.bytes(), 0);
  // The freed slot is reused, and the old content is no longer found.
  const uint32_t b = store.Acquire(Frame('b'));
  EXPECT_EQ(b, a);
  const uint32_t again = store.Acquire(Frame('a'));
  EXPECT_NE(again, b);
}

TEST(FrameStoreTest, CopyToRestoresTheTensor) {
  FrameStore store;
  v1::Tensor original;
  original.set_dtype(v1::DTYPE_FLOAT32);
  original.add_shape(2);
  original.add_shape(3);
  original.set_data(std::string(24, '\x3f'));
  v1::Tensor copy;
  store.CopyTo(store.Acquire(original), &copy);
  EXPECT_EQ(copy.SerializeAsString(), original.SerializeAsString());
}

}  // namespace
}  // namespace engram::replay
