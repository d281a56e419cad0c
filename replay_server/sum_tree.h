#ifndef ENGRAM_REPLAY_SERVER_SUM_TREE_H_
#define ENGRAM_REPLAY_SERVER_SUM_TREE_H_

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "absl/random/bit_gen_ref.h"
// MinTree, the other priority structure of a table, lives in min_tree.h; it is included here
// so that a table that holds both needs one include.
#include "replay_server/min_tree.h"  // IWYU pragma: export

namespace engram::replay {
namespace internal {

// Allocates on cache-line boundaries, so that the tree's sibling groups do not straddle lines.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};

  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, kAlignment); }

  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const {
    return false;
  }
};

}  // namespace internal

// A fixed-capacity binary sum tree: `capacity` leaves holding non-negative doubles (all 0
// at construction), with O(log n) point updates and O(log n) inverse-prefix-sum search.
// It is the priority index of prioritized replay (Schaul et al., 2016): sampling leaf i
// with probability value(i) / total() is Find(u) for u uniform in [0, total()).
//
// Numerical stability. Set() never propagates a delta (old + (new - old)) up the tree. It
// writes the leaf and then recomputes every ancestor on the path as
// `left child + right child`. Hence, at all times and whatever the update history, every
// internal node is exactly the floating-point sum of its two children, and the whole tree
// is a pure function of the current leaf values: total() is bit-for-bit what a tree built
// from scratch over the same leaves would hold. Nothing accumulates, so there is no drift
// after any number of updates (a delta-propagating tree gathers a rounding error per
// update, and can end up with a positive total over all-zero leaves or a negative node).
//
// Layout: an implicit array tree in one contiguous, cache-line-aligned vector. Node 1 is the
// root, node j has children 2j and 2j+1 (adjacent, so in one cache line), and leaf i is node
// L + i with L the smallest power of two >= capacity. Leaves at and past `capacity` are
// padding and stay 0. Memory: 2L doubles (16 MiB for capacity 2^20). A search is a chain of
// dependent loads that miss the cache near the leaves of a large tree, so searches are
// branch-free and prefetch the aligned lines of their descendants a few levels down, and
// SampleStratified() runs 32 searches level by level side by side so their misses overlap.
//
// Values must be finite and >= 0, and their sum must stay finite (below DBL_MAX).
//
// Not thread-safe; the owning table serializes access. Const methods are safe to call
// concurrently with each other.
class SumTree {
 public:
  // CHECK-fails unless capacity >= 1.
  explicit SumTree(int64_t capacity);

  SumTree(const SumTree&) = default;
  SumTree& operator=(const SumTree&) = default;
  SumTree(SumTree&&) = default;
  SumTree& operator=(SumTree&&) = default;

  int64_t capacity() const { return capacity_; }

  // Sets leaf `index` to `value`. O(log n). CHECK-fails unless 0 <= index < capacity() and
  // value is finite and >= 0 (the caller validates user input first).
  void Set(int64_t index, double value);

  // The value of leaf `index`; CHECK-fails unless 0 <= index < capacity(). O(1).
  double Get(int64_t index) const;

  // The sum of all leaves (the root). O(1).
  double total() const { return nodes_[1]; }

  // The leaf whose interval contains u, where leaf i covers [prefix(i), prefix(i) + value(i))
  // and prefix(i) is the sum of the leaves before i (as the tree's own sums round it).
  // Zero-valued leaves cover nothing and are never returned. O(log n).
  //
  // - total() == 0: returns -1.
  // - u < 0 or NaN: treated as 0, i.e. returns the first leaf with a value > 0.
  // - u >= total() (including +inf): returns the last leaf with a value > 0.
  // - u in [0, total()): from the root, the search takes the right child (with u -= left
  //   sum) when u >= left sum and the right sum is > 0, else the left child. Proof that it
  //   never returns a zero leaf: u stays >= 0, and every internal node is exactly
  //   left + right, so a node > 0 has a child > 0. Going right needs right > 0; going left
  //   happens when u < left (so left > u >= 0) or when right == 0 (so left > 0). Hence the
  //   search enters only nodes > 0, from the root down to the leaf. When rounding leaves u
  //   at or just past the end of a subtree (u within rounding of total(),
  //   u = nextafter(total(), 0), ...), it lands on the nearest leaf > 0 to the left.
  //
  // Monotone: u1 <= u2 implies Find(u1) <= Find(u2).
  int64_t Find(double u) const;

  // Stratified batch sampling (Schaul et al., 2016, appendix B.2.1): splits [0, total())
  // into n equal strata and writes to out[k] = Find(u_k) with u_k uniform in
  // [k * total() / n, (k + 1) * total() / n). The indices are nondecreasing in k; every
  // out[k] is a leaf with a value > 0, or -1 for all k when total() == 0.
  // `out` must have room for n indices; CHECK-fails unless n >= 0. O(n log n).
  void SampleStratified(int n, absl::BitGenRef rng, int64_t* out) const;

 private:
  // out[b] = Find(u[b]) for b < count <= kLanes, for u[b] already clamped to [0, total())
  // or +inf, with total() > 0: the descents advance level by level side by side.
  static constexpr int kLanes = 32;
  void FindLanes(const double* u, int count, int64_t* out) const;

  int64_t capacity_;
  int64_t leaf_offset_;  // L: the smallest power of two >= capacity_
  // [0] unused, [1] root, [L, L + capacity_) the leaves.
  std::vector<double, internal::CacheLineAllocator<double>> nodes_;
};

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_SUM_TREE_H_
