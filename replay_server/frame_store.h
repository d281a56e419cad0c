#ifndef ENGRAM_REPLAY_SERVER_FRAME_STORE_H_
#define ENGRAM_REPLAY_SERVER_FRAME_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engram/v1/tensor.pb.h"

namespace engram::replay {

// Reference-counted, content-deduplicated storage of observation tensors.
//
// An n-step transition carries o_t and o_{t+n}; the same observation also appears as o_t
// of a later transition and as o_{t+n} of an earlier one, and identical frames recur
// (reset states, static screens). Every distinct observation is stored once here and items
// hold 32-bit frame ids, so a table of n-step transitions keeps about one copy of each
// observation instead of two.
//
// Frames are found by a 64-bit hash of (dtype, shape, bytes) and confirmed by comparing
// bytes, so a hash collision costs deduplication, never correctness. Released frame slots
// are reused with their buffers, so a full table in steady state allocates nothing.
//
// Not thread-safe; the owning Table serializes access.
class FrameStore {
 public:
  static constexpr uint32_t kNoFrame = 0xFFFFFFFFu;

  // Stores `tensor` (or finds an identical stored frame) and takes one reference.
  uint32_t Acquire(const v1::Tensor& tensor);
  // Drops one reference; the frame is freed when none remain.
  void Release(uint32_t id);

  // Writes frame `id` into `out` (dtype, shape, data).
  void CopyTo(uint32_t id, v1::Tensor* out) const;

  int64_t frames() const { return live_; }
  // Bytes of frame data held (live frames only).
  int64_t bytes() const { return bytes_; }
  int32_t refs(uint32_t id) const { return frames_[id].refs; }

 private:
  struct Frame {
    v1::DType dtype = v1::DTYPE_UNSPECIFIED;
    std::vector<int64_t> shape;
    std::string data;
    uint64_t hash = 0;
    int32_t refs = 0;  // 0 = free slot
    bool indexed = false;
  };

  static uint64_t Hash(const v1::Tensor& tensor);
  static bool Same(const Frame& frame, const v1::Tensor& tensor);

  std::vector<Frame> frames_;
  std::vector<uint32_t> free_;
  absl::flat_hash_map<uint64_t, uint32_t> index_;  // hash -> frame id
  int64_t live_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_FRAME_STORE_H_
