#include "episodic_store/knn_index.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "faiss/IndexFlat.h"
#include "hnswlib/hnswlib.h"

namespace engram::episodic {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

class FlatIndex final : public KnnIndex {
 public:
  FlatIndex(int dim, int64_t capacity) : dim_(dim), index_(dim) {
    index_.codes.reserve(static_cast<size_t>(capacity) * dim * sizeof(float));
  }

  void Set(int64_t slot, const float* key) override {
    if (slot == index_.ntotal) {
      index_.add(1, key);
    } else {
      std::memcpy(index_.get_xb() + slot * dim_, key, dim_ * sizeof(float));
    }
  }

  int64_t size() const override { return index_.ntotal; }

  void Search(const float* queries, int64_t n, int k, float* distances,
              int64_t* labels) const override {
    std::fill(distances, distances + n * k, kInf);
    std::fill(labels, labels + n * k, -1);
    if (index_.ntotal == 0) return;
    index_.search(n, queries, k, distances, labels);
    // FAISS pads missing neighbours with label -1 and distance +max float.
    for (int64_t i = 0; i < n * k; ++i) {
      if (labels[i] < 0) distances[i] = kInf;
    }
  }

  const float* Key(int64_t slot) const override { return index_.get_xb() + slot * dim_; }

 private:
  const int dim_;
  faiss::IndexFlatL2 index_;
};

class HnswIndex final : public KnnIndex {
 public:
  HnswIndex(int dim, int64_t capacity, const HnswOptions& options)
      : dim_(dim),
        space_(dim),
        hnsw_(&space_, static_cast<size_t>(capacity), options.m, options.ef_construction),
        keys_(static_cast<size_t>(capacity) * dim) {
    // searchKnn uses max(ef, k): set once, so that concurrent searches only read it.
    hnsw_.setEf(static_cast<size_t>(options.ef_search));
  }

  void Set(int64_t slot, const float* key) override {
    std::memcpy(keys_.data() + slot * dim_, key, dim_ * sizeof(float));
    // A label already present is updated in place (its neighbours re-linked).
    hnsw_.addPoint(keys_.data() + slot * dim_, static_cast<hnswlib::labeltype>(slot));
    size_ = std::max(size_, slot + 1);
  }

  int64_t size() const override { return size_; }

  void Search(const float* queries, int64_t n, int k, float* distances,
              int64_t* labels) const override {
    std::fill(distances, distances + n * k, kInf);
    std::fill(labels, labels + n * k, -1);
    if (size_ == 0) return;
    for (int64_t q = 0; q < n; ++q) {
      auto found = hnsw_.searchKnn(queries + q * dim_, static_cast<size_t>(k));
      // A max-heap: the farthest first.
      for (int j = static_cast<int>(found.size()) - 1; j >= 0; --j) {
        distances[q * k + j] = found.top().first;
        labels[q * k + j] = static_cast<int64_t>(found.top().second);
        found.pop();
      }
    }
  }

  const float* Key(int64_t slot) const override { return keys_.data() + slot * dim_; }

 private:
  const int dim_;
  hnswlib::L2Space space_;
  hnswlib::HierarchicalNSW<float> hnsw_;
  std::vector<float> keys_;
  int64_t size_ = 0;
};

}  // namespace

std::unique_ptr<KnnIndex> MakeFlatIndex(int dim, int64_t capacity) {
  return std::make_unique<FlatIndex>(dim, capacity);
}

std::unique_ptr<KnnIndex> MakeHnswIndex(int dim, int64_t capacity, const HnswOptions& options) {
  return std::make_unique<HnswIndex>(dim, capacity, options);
}

}  // namespace engram::episodic
