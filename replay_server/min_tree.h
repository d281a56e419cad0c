#ifndef ENGRAM_REPLAY_SERVER_MIN_TREE_H_
#define ENGRAM_REPLAY_SERVER_MIN_TREE_H_

#include <cstdint>
#include <vector>

namespace engram::replay {

// A fixed-capacity tournament tree for the "evict the lowest priority, oldest first" remover.
// Each of `capacity` slots is empty (at construction) or holds a (priority, age) pair.
// ArgMin() names the non-empty slot with the smallest priority; among equal priorities the
// smallest age (the oldest item, when ages are insertion counters); among equal pairs the
// smallest index. Priorities may be any non-NaN double.
//
// Every internal node stores the winning (priority, age, index) of its subtree, recomputed
// from its two children on each update, so ArgMin() reads the root in O(1) and Set() and
// Clear() cost O(log n) without touching anything off the leaf-to-root path. Layout as in
// SumTree: an implicit array tree, root at 1, children 2j and 2j+1, leaf i at L + i with L
// the smallest power of two >= capacity. Memory: 2L nodes of 24 bytes (48 MiB for 2^20).
//
// Not thread-safe; the owning table serializes access. Const methods are safe to call
// concurrently with each other.
class MinTree {
 public:
  // CHECK-fails unless capacity >= 1.
  explicit MinTree(int64_t capacity);

  MinTree(const MinTree&) = default;
  MinTree& operator=(const MinTree&) = default;
  MinTree(MinTree&&) = default;
  MinTree& operator=(MinTree&&) = default;

  int64_t capacity() const { return capacity_; }
  // The number of non-empty slots. O(1).
  int64_t size() const { return size_; }

  // Fills slot `index` (replacing what it held). O(log n). CHECK-fails unless
  // 0 <= index < capacity() and priority is not NaN.
  void Set(int64_t index, double priority, uint64_t age);
  // Empties slot `index` (a no-op on an empty slot). O(log n). CHECK-fails unless
  // 0 <= index < capacity().
  void Clear(int64_t index);

  // Whether slot `index` holds a pair. CHECK-fails unless 0 <= index < capacity(). O(1).
  bool Contains(int64_t index) const;
  // The pair in slot `index`; CHECK-fails unless Contains(index). O(1).
  double priority(int64_t index) const;
  uint64_t age(int64_t index) const;

  // The slot with the smallest (priority, age, index), or -1 when all are empty. O(1).
  int64_t ArgMin() const { return nodes_[1].index; }

 private:
  struct Node {
    double priority;
    uint64_t age;
    int64_t index;  // -1: empty
  };

  void Update(int64_t node);

  int64_t capacity_;
  int64_t leaf_offset_;  // L: the smallest power of two >= capacity_
  int64_t size_ = 0;
  std::vector<Node> nodes_;  // [0] unused, [1] root, [L, L + capacity_) the slots
};

}  // namespace engram::replay

#endif  // ENGRAM_REPLAY_SERVER_MIN_TREE_H_
