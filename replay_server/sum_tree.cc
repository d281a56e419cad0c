#include "replay_server/sum_tree.h"

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <limits>

#include "absl/random/distributions.h"
#include "common/check.h"

namespace engram::replay {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The search's input range: u < 0 or NaN means the first leaf > 0, u >= total the last one.
// +inf reaches the last leaf > 0 because it takes every non-empty right child and
// inf - left stays inf.
inline double ClampSearch(double u, double total) {
  if (!(u >= 0)) return 0.0;
  if (u >= total) return kInf;
  return u;
}

// One level of the search from internal node j, whose sum is > 0: returns the child to enter.
// See Find() in the header for why that child's sum is > 0 too. Branch-free: the direction is
// a coin flip for random u, and mispredictions cost several times more than this arithmetic
// (measured); the multiply keeps the compiler from turning the conditional subtraction into a
// branch.
inline int64_t Descend(const double* nodes, int64_t j, double& u) {
  const double left = nodes[2 * j];
  const double right = nodes[2 * j + 1];
  const bool go_right = (u >= left) & (right > 0);
  u -= static_cast<double>(go_right) * left;  // left is finite: 0 * left == 0
  return 2 * j + static_cast<int64_t>(go_right);
}

}  // namespace

SumTree::SumTree(int64_t capacity) : capacity_(capacity), leaf_offset_(1) {
  ENGRAM_CHECK(capacity >= 1) << "capacity " << capacity;
  while (leaf_offset_ < capacity) leaf_offset_ *= 2;
  nodes_.assign(2 * leaf_offset_, 0.0);
}

void SumTree::Set(int64_t index, double value) {
  ENGRAM_CHECK(index >= 0 && index < capacity_) << "index " << index << " capacity " << capacity_;
  // Rejects negatives, NaN and infinities in one comparison chain.
  ENGRAM_CHECK(value >= 0 && value <= DBL_MAX) << "value " << value;
  if (value == 0) value = 0;  // -0.0 -> +0.0, so equal leaf sets give bit-identical trees
  double* nodes = nodes_.data();
  int64_t j = leaf_offset_ + index;
  nodes[j] = value;
  // Recompute, never adjust: each ancestor becomes exactly the sum of its two children, which
  // is what makes the tree a function of its leaves alone (see the header). The child on the
  // path is the value just computed, carried in a register rather than reloaded from memory
  // (IEEE addition is commutative, so sum + sibling is bit-for-bit left + right); the
  // siblings' loads do not depend on each other, so their cache misses overlap.
  double sum = value;
  for (; j > 1; j >>= 1) {
    sum += nodes[j ^ 1];
    nodes[j >> 1] = sum;
  }
}

double SumTree::Get(int64_t index) const {
  ENGRAM_CHECK(index >= 0 && index < capacity_) << "index " << index << " capacity " << capacity_;
  return nodes_[leaf_offset_ + index];
}

int64_t SumTree::Find(double u) const {
  const double* nodes = nodes_.data();
  const double total = nodes[1];
  if (!(total > 0)) return -1;
  u = ClampSearch(u, total);
  // One search is a chain of dependent loads, mostly cache misses near the leaves of a large
  // tree. From node j, prefetch its 16 descendants four levels down (16j..16j+15, two
  // aligned lines) so that the misses of successive levels overlap. j < L / 8 keeps the
  // addresses inside the array.
  const int64_t prefetch_below = leaf_offset_ / 8;
  int64_t j = 1;
  while (j < leaf_offset_) {
    if (j < prefetch_below) {
      __builtin_prefetch(nodes + 16 * j);
      __builtin_prefetch(nodes + 16 * j + 8);
    }
    j = Descend(nodes, j, u);
  }
  return j - leaf_offset_;
}

void SumTree::FindLanes(const double* u_in, int count, int64_t* out) const {
  const double* nodes = nodes_.data();
  int64_t j[kLanes];
  double u[kLanes];
  for (int b = 0; b < count; ++b) {
    j[b] = 1;
    u[b] = u_in[b];
  }
  // Level by level across the lanes: the lanes' loads are independent, so their misses are
  // in flight together; each lane also prefetches its 8 descendants three levels down
  // (8j..8j+7, one aligned line; j < L / 4 keeps the address inside the array).
  const int64_t prefetch_below = leaf_offset_ / 4;
  for (int64_t level = 1; level < leaf_offset_; level *= 2) {
    for (int b = 0; b < count; ++b) {
      if (j[b] < prefetch_below) __builtin_prefetch(nodes + 8 * j[b]);
      j[b] = Descend(nodes, j[b], u[b]);
    }
  }
  for (int b = 0; b < count; ++b) out[b] = j[b] - leaf_offset_;
}

void SumTree::SampleStratified(int n, absl::BitGenRef rng, int64_t* out) const {
  ENGRAM_CHECK(n >= 0) << "n " << n;
  const double total = nodes_[1];
  if (!(total > 0)) {
    std::fill(out, out + n, int64_t{-1});
    return;
  }
  const double width = total / n;
  double u[kLanes];
  for (int start = 0; start < n; start += kLanes) {
    const int count = std::min(kLanes, n - start);
    for (int b = 0; b < count; ++b) {
      // (k + U) * width rather than k * width + U * width: rounding is monotone and
      // k + U < k + 1 <= k + 1 + U', so the u_k never decrease with k.
      const int k = start + b;
      u[b] = ClampSearch((k + absl::Uniform(rng, 0.0, 1.0)) * width, total);
    }
    FindLanes(u, count, out + start);
  }
}

}  // namespace engram::replay
