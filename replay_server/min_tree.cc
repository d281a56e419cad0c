#include "replay_server/min_tree.h"

#include <cmath>
#include <cstdint>

#include "common/check.h"

namespace engram::replay {
namespace {

constexpr int64_t kEmpty = -1;

}  // namespace

MinTree::MinTree(int64_t capacity) : capacity_(capacity), leaf_offset_(1) {
  ENGRAM_CHECK(capacity >= 1) << "capacity " << capacity;
  while (leaf_offset_ < capacity) leaf_offset_ *= 2;
  nodes_.assign(2 * leaf_offset_, Node{0.0, 0, kEmpty});
}

void MinTree::Set(int64_t index, double priority, uint64_t age) {
  ENGRAM_CHECK(index >= 0 && index < capacity_) << "index " << index << " capacity " << capacity_;
  ENGRAM_CHECK(!std::isnan(priority)) << "priority is NaN at index " << index;
  Node& leaf = nodes_[leaf_offset_ + index];
  if (leaf.index == kEmpty) ++size_;
  leaf = Node{priority, age, index};
  Update(leaf_offset_ + index);
}

void MinTree::Clear(int64_t index) {
  ENGRAM_CHECK(index >= 0 && index < capacity_) << "index " << index << " capacity " << capacity_;
  Node& leaf = nodes_[leaf_offset_ + index];
  if (leaf.index == kEmpty) return;
  --size_;
  leaf = Node{0.0, 0, kEmpty};
  Update(leaf_offset_ + index);
}

bool MinTree::Contains(int64_t index) const {
  ENGRAM_CHECK(index >= 0 && index < capacity_) << "index " << index << " capacity " << capacity_;
  return nodes_[leaf_offset_ + index].index != kEmpty;
}

double MinTree::priority(int64_t index) const {
  ENGRAM_CHECK(Contains(index)) << "slot " << index << " is empty";
  return nodes_[leaf_offset_ + index].priority;
}

uint64_t MinTree::age(int64_t index) const {
  ENGRAM_CHECK(Contains(index)) << "slot " << index << " is empty";
  return nodes_[leaf_offset_ + index].age;
}

void MinTree::Update(int64_t node) {
  // The path's winner so far stays in registers; only the siblings are loaded, and their loads
  // do not depend on each other, so their cache misses overlap.
  Node winner = nodes_[node];
  for (int64_t j = node; j > 1; j >>= 1) {
    const Node& sibling = nodes_[j ^ 1];
    const bool path_is_left = (j & 1) == 0;
    const Node& left = path_is_left ? winner : sibling;
    const Node& right = path_is_left ? sibling : winner;
    // The left child wins ties on (priority, age): its indices are the smaller ones. An empty
    // right child never wins; an empty left child loses to any non-empty right one. Written
    // without branches: for random priorities the outcome is a coin flip, and mispredictions
    // would also discard the sibling loads already in flight further up the path.
    const bool right_wins =
        (right.index != kEmpty) & ((left.index == kEmpty) | (right.priority < left.priority) |
                                   ((right.priority == left.priority) & (right.age < left.age)));
    winner = *(right_wins ? &right : &left);
    nodes_[j >> 1] = winner;
  }
}

}  // namespace engram::replay
