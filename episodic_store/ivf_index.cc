// IvfIndex: an inverted-file index (k-means coarse quantizer, exact scanning of the probed
// lists) with keys stored in blocks of 16 for SIMD scanning. See knn_index.h.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "episodic_store/knn_index.h"

namespace engram::episodic {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int kLanes = 16;  // keys per block
// Sample points per list used by k-means (the rest of the keys are only assigned).
constexpr int64_t kSamplePerList = 32;
// Trainings happen as the keys grow by this factor; each plans its lists for the size the
// next one happens at (at most the capacity).
constexpr int64_t kGrowth = 4;
// Queries whose coarse scores are computed together (bounds the scratch: 64 x lists floats).
constexpr int64_t kCoarseChunk = 64;

// 16 floats as one value: one zmm register with AVX-512, two ymm with AVX2, four xmm
// otherwise.
using Lanes = float __attribute__((vector_size(kLanes * sizeof(float))));

// Unaligned loads and stores of 16 lanes (std::vector<float> data is 16-byte aligned; clang
// ignores a reduced alignment on vector typedefs).
#define ENGRAM_LOAD(p)                         \
  ({                                           \
    Lanes loaded_;                             \
    std::memcpy(&loaded_, (p), sizeof(Lanes)); \
    loaded_;                                   \
  })
#define ENGRAM_STORE(p, v)                     \
  do {                                         \
    const Lanes stored_ = (v);                 \
    std::memcpy((p), &stored_, sizeof(Lanes)); \
  } while (0)

// Runtime-dispatched clones (an ifunc picks one at load time): Debian builds for baseline
// x86-64, and these loops are where search time goes.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ENGRAM_SIMD_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ENGRAM_SIMD_CLONES
#endif

// For `blocks` blocks of 16 keys laid out [block][dim][lane], with squared norms
// [block][lane]: scores[16 b + l] = |x|^2 - 2 q.x, the squared distance less |q|^2. Four
// blocks at a time, so that four independent accumulators hide the FMA latency.
ENGRAM_SIMD_CLONES
void ScoreBlocks(const float* q, int dim, const float* data, const float* norms, int64_t blocks,
                 float* scores) {
  const int64_t stride = static_cast<int64_t>(dim) * kLanes;
  int64_t b = 0;
  for (; b + 4 <= blocks; b += 4) {
    const float* x = data + b * stride;
    Lanes a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int d = 0; d < dim; ++d) {
      const float qd = q[d];
      a0 += ENGRAM_LOAD(x + d * kLanes) * qd;
      a1 += ENGRAM_LOAD(x + stride + d * kLanes) * qd;
      a2 += ENGRAM_LOAD(x + 2 * stride + d * kLanes) * qd;
      a3 += ENGRAM_LOAD(x + 3 * stride + d * kLanes) * qd;
    }
    const float* n = norms + b * kLanes;
    float* s = scores + b * kLanes;
    ENGRAM_STORE(s, ENGRAM_LOAD(n) - 2 * a0);
    ENGRAM_STORE(s + kLanes, ENGRAM_LOAD(n + kLanes) - 2 * a1);
    ENGRAM_STORE(s + 2 * kLanes, ENGRAM_LOAD(n + 2 * kLanes) - 2 * a2);
    ENGRAM_STORE(s + 3 * kLanes, ENGRAM_LOAD(n + 3 * kLanes) - 2 * a3);
  }
  for (; b < blocks; ++b) {
    const float* x = data + b * stride;
    Lanes a = {};
    for (int d = 0; d < dim; ++d) a += ENGRAM_LOAD(x + d * kLanes) * q[d];
    ENGRAM_STORE(scores + b * kLanes, ENGRAM_LOAD(norms + b * kLanes) - 2 * a);
  }
}

// ScoreBlocks for n queries at once: scores[i * blocks * 16 + 16 b + l]. Block-major, so
// each block is read from memory once and stays in L1 for all the queries (the coarse step
// of a batch: every query scores every centroid).
ENGRAM_SIMD_CLONES
void ScoreBlocksMany(const float* queries, int64_t n, int dim, const float* data,
                     const float* norms, int64_t blocks, float* scores) {
  const int64_t stride = static_cast<int64_t>(dim) * kLanes;
  const int64_t row_length = blocks * kLanes;
  for (int64_t b = 0; b < blocks; ++b) {
    const float* x = data + b * stride;
    const Lanes norm = ENGRAM_LOAD(norms + b * kLanes);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      const float* q = queries + i * dim;
      Lanes a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int d = 0; d < dim; ++d) {
        const Lanes row = ENGRAM_LOAD(x + d * kLanes);
        a0 += row * q[d];
        a1 += row * q[dim + d];
        a2 += row * q[2 * dim + d];
        a3 += row * q[3 * dim + d];
      }
      float* s = scores + i * row_length + b * kLanes;
      ENGRAM_STORE(s, norm - 2 * a0);
      ENGRAM_STORE(s + row_length, norm - 2 * a1);
      ENGRAM_STORE(s + 2 * row_length, norm - 2 * a2);
      ENGRAM_STORE(s + 3 * row_length, norm - 2 * a3);
    }
    for (; i < n; ++i) {
      const float* q = queries + i * dim;
      Lanes a = {};
      for (int d = 0; d < dim; ++d) a += ENGRAM_LOAD(x + d * kLanes) * q[d];
      ENGRAM_STORE(scores + i * row_length + b * kLanes, norm - 2 * a);
    }
  }
}

// Exact squared distances from q to n row-major keys.
ENGRAM_SIMD_CLONES
void SquaredDistances(const float* q, int dim, const float* keys, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* x = keys + i * dim;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int d = 0;
    for (; d + 4 <= dim; d += 4) {
      const float e0 = q[d] - x[d], e1 = q[d + 1] - x[d + 1];
      const float e2 = q[d + 2] - x[d + 2], e3 = q[d + 3] - x[d + 3];
      s0 += e0 * e0;
      s1 += e1 * e1;
      s2 += e2 * e2;
      s3 += e3 * e3;
    }
    for (; d < dim; ++d) s0 += (q[d] - x[d]) * (q[d] - x[d]);
    out[i] = (s0 + s1) + (s2 + s3);
  }
}

float SquaredNorm(const float* x, int dim) {
  float s = 0;
  for (int d = 0; d < dim; ++d) s += x[d] * x[d];
  return s;
}

// Keys in blocks of 16: data [block][dim][lane], norms [block][lane] (+inf in unused
// lanes, whose data is 0, so that their score is +inf), ids [position].
struct BlockList {
  std::vector<float> data;
  std::vector<float> norms;
  std::vector<int64_t> ids;

  int64_t size() const { return static_cast<int64_t>(ids.size()); }
  int64_t blocks() const { return static_cast<int64_t>(norms.size()) / kLanes; }

  void Reserve(int64_t rows, int dim) {
    const int64_t blocks = (rows + kLanes - 1) / kLanes;
    data.reserve(static_cast<size_t>(blocks) * dim * kLanes);
    norms.reserve(static_cast<size_t>(blocks) * kLanes);
    ids.reserve(static_cast<size_t>(rows));
  }

  void Clear() {
    data.clear();
    norms.clear();
    ids.clear();
  }

  void Append(const float* row, float norm, int dim, int64_t id) {
    const int64_t pos = size();
    if (pos % kLanes == 0) {
      data.resize(data.size() + static_cast<size_t>(dim) * kLanes, 0.0f);
      norms.resize(norms.size() + kLanes, kInf);
    }
    float* x = data.data() + (pos / kLanes) * dim * kLanes + pos % kLanes;
    for (int d = 0; d < dim; ++d) x[d * kLanes] = row[d];
    norms[pos] = norm;
    ids.push_back(id);
  }

  // Moves the last row into `pos` and shrinks by one; returns the id that moved (or -1).
  int64_t Remove(int64_t pos, int dim) {
    const int64_t last = size() - 1;
    int64_t moved = -1;
    float* from = data.data() + (last / kLanes) * dim * kLanes + last % kLanes;
    if (pos != last) {
      float* to = data.data() + (pos / kLanes) * dim * kLanes + pos % kLanes;
      for (int d = 0; d < dim; ++d) to[d * kLanes] = from[d * kLanes];
      norms[pos] = norms[last];
      ids[pos] = moved = ids[last];
    }
    for (int d = 0; d < dim; ++d) from[d * kLanes] = 0.0f;
    norms[last] = kInf;
    ids.pop_back();
    if (size() % kLanes == 0) {
      data.resize(data.size() - static_cast<size_t>(dim) * kLanes);
      norms.resize(norms.size() - kLanes);
    }
    return moved;
  }
};

// The k smallest (score, id) pairs seen: a binary max-heap over scores (ids alongside), the
// worst on top.
class TopK {
 public:
  explicit TopK(int k) : k_(k) {
    scores_.reserve(k);
    ids_.reserve(k);
  }
  void Reset() {
    scores_.clear();
    ids_.clear();
  }
  float bound() const { return static_cast<int>(scores_.size()) < k_ ? kInf : scores_[0]; }
  void Push(float score, int64_t id) {
    if (static_cast<int>(scores_.size()) < k_) {  // sift up
      size_t i = scores_.size();
      scores_.push_back(score);
      ids_.push_back(id);
      while (i > 0 && scores_[(i - 1) / 2] < score) {
        scores_[i] = scores_[(i - 1) / 2];
        ids_[i] = ids_[(i - 1) / 2];
        i = (i - 1) / 2;
      }
      scores_[i] = score;
      ids_[i] = id;
    } else if (score < scores_[0]) {  // replace the top, sift down
      const size_t n = scores_.size();
      size_t i = 0;
      for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && scores_[child + 1] > scores_[child]) ++child;
        if (scores_[child] <= score) break;
        scores_[i] = scores_[child];
        ids_[i] = ids_[child];
        i = child;
      }
      scores_[i] = score;
      ids_[i] = id;
    }
  }
  // Pushes the first `n` scores of a scanned list.
  void PushAll(const float* scores, const int64_t* ids, int64_t n) {
    float limit = bound();
    for (int64_t i = 0; i < n; ++i) {
      if (scores[i] < limit) {
        Push(scores[i], ids[i]);
        limit = bound();
      }
    }
  }
  // (score, id) ascending.
  void Sorted(std::vector<std::pair<float, int64_t>>* out) const {
    out->clear();
    for (size_t i = 0; i < scores_.size(); ++i) out->emplace_back(scores_[i], ids_[i]);
    std::sort(out->begin(), out->end());
  }

 private:
  const int k_;
  std::vector<float> scores_;
  std::vector<int64_t> ids_;
};

class IvfIndex final : public KnnIndex {
 public:
  IvfIndex(int dim, int64_t capacity, const IvfOptions& options)
      : dim_(dim), capacity_(capacity), options_(options) {}

  // A key written once the index is trained waits in `pending_` (searched exactly) until
  // kCoarseChunk have gathered, and is then assigned to its list together with the others:
  // one pass over the centroids for the lot.
  void Set(int64_t slot, const float* key) override {
    if (slot == size()) {
      keys_.insert(keys_.end(), key, key + dim_);
      where_.push_back({kNoList, -1});
    } else {
      if (where_[slot].list >= 0) RemoveFromList(slot);
      std::memcpy(keys_.data() + slot * dim_, key, dim_ * sizeof(float));
    }
    if (trained() && where_[slot].list == kNoList) {
      where_[slot] = {kPending, static_cast<int64_t>(pending_.size())};
      pending_.push_back(slot);
      if (static_cast<int64_t>(pending_.size()) >= kCoarseChunk) AssignPending();
    }
    ++sets_since_training_;
    if (ShouldTrain()) Train();
  }

  void Flush() override {
    if (!pending_.empty()) AssignPending();
  }

  int64_t size() const override { return static_cast<int64_t>(where_.size()); }

  // Untrained: exact distances to every key. Trained: the keys of the nprobe lists nearest
  // to the query.
  void Search(const float* queries, int64_t n, int k, float* distances,
              int64_t* labels) const override {
    std::fill(distances, distances + n * k, kInf);
    std::fill(labels, labels + n * k, -1);
    TopK top(k), probes(static_cast<int>(
                     std::clamp<int64_t>(options_.nprobe, 1, static_cast<int64_t>(lists_.size()))));
    // Scratch kept per thread: the coarse scores alone are 64 x lists floats (~200 KB at
    // 100K keys), which malloc would map and unmap on every call.
    thread_local std::vector<float> scores, coarse;
    thread_local std::vector<std::pair<float, int64_t>> probed, found;
    if (trained()) {  // every query against every centroid, in chunks
      coarse.resize(std::min<int64_t>(n, kCoarseChunk) * centroids_.norms.size());
    }
    for (int64_t i = 0; i < n; ++i) {
      const float* q = queries + i * dim_;
      top.Reset();
      float offset = 0;  // what the scores leave out of the squared distance
      if (!trained()) {
        scores.resize(size());
        SquaredDistances(q, dim_, keys_.data(), size(), scores.data());
        for (int64_t slot = 0; slot < size(); ++slot) top.Push(scores[slot], slot);
      } else {
        if (i % kCoarseChunk == 0) {
          ScoreBlocksMany(q, std::min<int64_t>(n - i, kCoarseChunk), dim_, centroids_.data.data(),
                          centroids_.norms.data(), centroids_.blocks(), coarse.data());
        }
        probes.Reset();
        probes.PushAll(coarse.data() + (i % kCoarseChunk) * centroids_.norms.size(),
                       centroids_.ids.data(), centroids_.size());
        probes.Sorted(&probed);
        for (const auto& [score, list] : probed) {
          const BlockList& keys = lists_[list];
          if (keys.size() == 0) continue;
          scores.resize(keys.norms.size());
          ScoreBlocks(q, dim_, keys.data.data(), keys.norms.data(), keys.blocks(), scores.data());
          top.PushAll(scores.data(), keys.ids.data(), keys.size());
        }
        offset = SquaredNorm(q, dim_);
        for (int64_t slot : pending_) {
          float distance;
          SquaredDistances(q, dim_, Key(slot), 1, &distance);
          top.Push(distance - offset, slot);
        }
      }
      top.Sorted(&found);
      for (size_t j = 0; j < found.size(); ++j) {
        distances[i * k + j] = std::max(0.0f, found[j].first + offset);
        labels[i * k + j] = found[j].second;
      }
    }
  }

  const float* Key(int64_t slot) const override { return keys_.data() + slot * dim_; }

 private:
  static constexpr int32_t kNoList = -1;   // in no list (untrained, or being moved)
  static constexpr int32_t kPending = -2;  // in pending_ at pos
  struct Where {
    int32_t list;
    int64_t pos;
  };

  bool trained() const { return centroids_.size() > 0; }

  // The nearest centroid of each of n row-major points. Block-major in chunks, like the
  // coarse step of Search.
  void NearestMany(const float* points, int64_t n, int32_t* out) const {
    const int64_t row_length = static_cast<int64_t>(centroids_.norms.size());
    thread_local std::vector<float> scores;  // see Search
    scores.resize(std::min(n, kCoarseChunk) * row_length);
    for (int64_t start = 0; start < n; start += kCoarseChunk) {
      const int64_t count = std::min(kCoarseChunk, n - start);
      ScoreBlocksMany(points + start * dim_, count, dim_, centroids_.data.data(),
                      centroids_.norms.data(), centroids_.blocks(), scores.data());
      for (int64_t i = 0; i < count; ++i) {
        const float* row = scores.data() + i * row_length;
        out[start + i] = static_cast<int32_t>(std::min_element(row, row + row_length) - row);
      }
    }
  }

  void AssignPending() {
    std::vector<float>& points = pending_points_;
    points.resize(pending_.size() * dim_);
    for (size_t i = 0; i < pending_.size(); ++i) {
      std::memcpy(points.data() + i * dim_, Key(pending_[i]), dim_ * sizeof(float));
    }
    int32_t nearest[kCoarseChunk];
    NearestMany(points.data(), static_cast<int64_t>(pending_.size()), nearest);
    for (size_t i = 0; i < pending_.size(); ++i) AddToList(pending_[i], nearest[i]);
    pending_.clear();
  }

  void AddToList(int64_t slot, int32_t list) {
    BlockList& keys = lists_[list];
    where_[slot] = {list, keys.size()};
    keys.Append(Key(slot), SquaredNorm(Key(slot), dim_), dim_, slot);
    sum_squared_sizes_ += 2 * keys.size() - 1;  // size^2 - (size - 1)^2
  }

  void RemoveFromList(int64_t slot) {
    const auto [list, pos] = where_[slot];
    sum_squared_sizes_ -= 2 * lists_[list].size() - 1;
    const int64_t moved = lists_[list].Remove(pos, dim_);
    if (moved >= 0) where_[moved].pos = pos;
    where_[slot] = {kNoList, -1};
  }

  // lists * sum(size_i^2) / n^2: 1 for equal lists, the factor by which a query's scan is
  // longer than with balanced lists.
  double Imbalance() const {
    const double n = static_cast<double>(size());
    return n == 0 ? 1.0 : static_cast<double>(lists_.size()) * sum_squared_sizes_ / (n * n);
  }

  // First training at options_.train_at keys; again when the keys have grown kGrowth-fold
  // since, or when they have turned over by as many as there were and the lists have become
  // markedly more unbalanced (the keys drifted away from the centroids).
  bool ShouldTrain() const {
    if (!trained()) return size() >= std::max<int64_t>(options_.train_at, 2);
    if (sets_since_training_ < size_at_training_) return false;
    return size() >= kGrowth * size_at_training_ || Imbalance() > 1.5 * imbalance_at_training_;
  }

  // k-means on a sample of the keys (Lloyd's iterations from sampled keys), then every key
  // copied into the list of its nearest centroid.
  void Train() {
    const int64_t n = size();
    const int64_t planned = std::max(n, std::min(capacity_, kGrowth * n));
    const int64_t lists = std::clamp<int64_t>(
        (planned + options_.list_size - 1) / std::max(1, options_.list_size), 1, n);
    // The sample, gathered once: a partial Fisher-Yates shuffle of the slots.
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    const int64_t sample_size = std::min(n, lists * kSamplePerList);
    std::vector<float> sample(sample_size * dim_);
    for (int64_t i = 0; i < sample_size; ++i) {
      std::swap(order[i], order[std::uniform_int_distribution<int64_t>(i, n - 1)(rng_)]);
      std::memcpy(sample.data() + i * dim_, Key(order[i]), dim_ * sizeof(float));
    }

    std::vector<float> centroids(sample.begin(), sample.begin() + lists * dim_);
    std::vector<int32_t> assignment(sample_size);
    std::vector<int64_t> counts(lists);
    for (int iteration = 0; iteration < options_.kmeans_iterations; ++iteration) {
      SetCentroids(centroids, lists);
      NearestMany(sample.data(), sample_size, assignment.data());
      std::fill(centroids.begin(), centroids.end(), 0.0f);
      std::fill(counts.begin(), counts.end(), 0);
      for (int64_t i = 0; i < sample_size; ++i) {
        const float* x = sample.data() + i * dim_;
        float* c = centroids.data() + assignment[i] * dim_;
        for (int d = 0; d < dim_; ++d) c[d] += x[d];
        ++counts[assignment[i]];
      }
      for (int64_t c = 0; c < lists; ++c) {
        float* centroid = centroids.data() + c * dim_;
        if (counts[c] == 0) {  // an empty cluster restarts from a random sampled key
          const int64_t pick = std::uniform_int_distribution<int64_t>(0, sample_size - 1)(rng_);
          std::memcpy(centroid, sample.data() + pick * dim_, dim_ * sizeof(float));
          continue;
        }
        for (int d = 0; d < dim_; ++d) centroid[d] /= static_cast<float>(counts[c]);
      }
    }
    SetCentroids(centroids, lists);

    std::vector<int32_t> nearest(n);
    NearestMany(keys_.data(), n, nearest.data());
    std::fill(counts.begin(), counts.end(), 0);
    for (int64_t slot = 0; slot < n; ++slot) ++counts[nearest[slot]];
    lists_.assign(lists, BlockList());
    // Room for the growth planned until the next training, so that lists do not reallocate.
    const double growth = 1.1 * static_cast<double>(planned) / static_cast<double>(n);
    for (int64_t c = 0; c < lists; ++c) {
      lists_[c].Reserve(static_cast<int64_t>(growth * static_cast<double>(counts[c])) + 1, dim_);
    }
    keys_.reserve(static_cast<size_t>(planned) * dim_);
    sum_squared_sizes_ = 0;
    pending_.clear();
    for (int64_t slot = 0; slot < n; ++slot) AddToList(slot, nearest[slot]);
    size_at_training_ = n;
    sets_since_training_ = 0;
    imbalance_at_training_ = Imbalance();
  }

  void SetCentroids(const std::vector<float>& centroids, int64_t lists) {
    centroids_.Clear();
    for (int64_t c = 0; c < lists; ++c) {
      const float* centroid = centroids.data() + c * dim_;
      centroids_.Append(centroid, SquaredNorm(centroid, dim_), dim_, c);
    }
  }

  const int dim_;
  const int64_t capacity_;
  const IvfOptions options_;
  std::vector<float> keys_;            // [slot][dim], exact
  std::vector<Where> where_;           // each slot's list and position in it (once trained)
  std::vector<int64_t> pending_;       // slots written since the last assignment (< 64)
  std::vector<float> pending_points_;  // their keys, gathered (scratch)
  BlockList centroids_;                // empty until trained; ids are list numbers
  std::vector<BlockList> lists_;
  int64_t sum_squared_sizes_ = 0;
  int64_t size_at_training_ = 0;
  int64_t sets_since_training_ = 0;
  double imbalance_at_training_ = 1.0;
  std::mt19937_64 rng_{0x9e3779b97f4a7c15ULL};
};

}  // namespace

std::unique_ptr<KnnIndex> MakeIvfIndex(int dim, int64_t capacity, const IvfOptions& options) {
  return std::make_unique<IvfIndex>(dim, capacity, options);
}

}  // namespace engram::episodic
