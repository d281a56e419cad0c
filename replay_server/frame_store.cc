#include "replay_server/frame_store.h"

#include "absl/hash/hash.h"
#include "common/check.h"

namespace engram::replay {

uint64_t FrameStore::Hash(const v1::Tensor& tensor) {
  return absl::HashOf(static_cast<int>(tensor.dtype()),
                      absl::MakeSpan(tensor.shape().data(), tensor.shape_size()),
                      absl::string_view(tensor.data()));
}

bool FrameStore::Same(const Frame& frame, const v1::Tensor& tensor) {
  if (frame.dtype != tensor.dtype() || frame.data != tensor.data()) return false;
  if (frame.shape.size() != static_cast<size_t>(tensor.shape_size())) return false;
  for (int i = 0; i < tensor.shape_size(); ++i) {
    if (frame.shape[i] != tensor.shape(i)) return false;
  }
  return true;
}

uint32_t FrameStore::Acquire(const v1::Tensor& tensor) {
  const uint64_t hash = Hash(tensor);
  auto it = index_.find(hash);
  if (it != index_.end() && Same(frames_[it->second], tensor)) {
    ++frames_[it->second].refs;
    return it->second;
  }
  uint32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<uint32_t>(frames_.size());
    ENGRAM_CHECK(id != kNoFrame) << "frame store full";
    frames_.emplace_back();
  }
  Frame& frame = frames_[id];
  frame.dtype = tensor.dtype();
  frame.shape.assign(tensor.shape().begin(), tensor.shape().end());
  frame.data.assign(tensor.data());  // reuses the slot's buffer when it is large enough
  frame.hash = hash;
  frame.refs = 1;
  // On a (64-bit) collision the older frame keeps the index entry; this one is simply
  // not shared.
  frame.indexed = it == index_.end();
  if (frame.indexed) index_.emplace(hash, id);
  ++live_;
  bytes_ += static_cast<int64_t>(frame.data.size());
  return id;
}

void FrameStore::Release(uint32_t id) {
  Frame& frame = frames_[id];
  ENGRAM_CHECK(frame.refs > 0) << "release of free frame " << id;
  if (--frame.refs > 0) return;
  if (frame.indexed) index_.erase(frame.hash);
  frame.indexed = false;
  --live_;
  bytes_ -= static_cast<int64_t>(frame.data.size());
  free_.push_back(id);
}

void FrameStore::CopyTo(uint32_t id, v1::Tensor* out) const {
  const Frame& frame = frames_[id];
  out->set_dtype(frame.dtype);
  out->mutable_shape()->Assign(frame.shape.begin(), frame.shape.end());
  out->set_data(frame.data);
}

}  // namespace engram::replay
