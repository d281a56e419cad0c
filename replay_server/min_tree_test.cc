#include "replay_server/min_tree.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace engram::replay {
namespace {

TEST(MinTreeTest, EmptyHasNoArgMin) {
  MinTree tree(5);
  EXPECT_EQ(tree.capacity(), 5);
  EXPECT_EQ(tree.size(), 0);
  EXPECT_EQ(tree.ArgMin(), -1);
  for (int64_t i = 0; i < 5; ++i) EXPECT_FALSE(tree.Contains(i));
}

TEST(MinTreeTest, LowestPriorityWins) {
  MinTree tree(6);
  tree.Set(0, 3.0, 0);
  tree.Set(4, 1.0, 1);
  tree.Set(2, 2.0, 2);
  EXPECT_EQ(tree.size(), 3);
  EXPECT_EQ(tree.ArgMin(), 4);
  EXPECT_TRUE(tree.Contains(2));
  EXPECT_EQ(tree.priority(2), 2.0);
  EXPECT_EQ(tree.age(2), 2u);
}

TEST(MinTreeTest, TiesGoToTheOldestThenTheSmallestIndex) {
  MinTree tree(8);
  tree.Set(1, 1.0, 30);
  tree.Set(6, 1.0, 10);
  tree.Set(3, 1.0, 20);
  tree.Set(0, 2.0, 0);
  EXPECT_EQ(tree.ArgMin(), 6);  // oldest of the priority-1 items, though far right
  tree.Set(5, 1.0, 10);
  EXPECT_EQ(tree.ArgMin(), 5);  // same priority and age: smaller index
  tree.Clear(5);
  tree.Clear(6);
  EXPECT_EQ(tree.ArgMin(), 3);
  tree.Clear(3);
  EXPECT_EQ(tree.ArgMin(), 1);
}

TEST(MinTreeTest, ClearAndReplace) {
  MinTree tree(3);
  tree.Set(0, 5.0, 0);
  tree.Set(1, 4.0, 1);
  tree.Set(2, 6.0, 2);
  tree.Clear(1);
  EXPECT_EQ(tree.size(), 2);
  EXPECT_FALSE(tree.Contains(1));
  EXPECT_EQ(tree.ArgMin(), 0);
  tree.Clear(1);  // already empty: no-op
  EXPECT_EQ(tree.size(), 2);
  tree.Set(2, 1.0, 3);  // replace in place: raises and lowers
  EXPECT_EQ(tree.size(), 2);
  EXPECT_EQ(tree.ArgMin(), 2);
  tree.Set(2, 9.0, 3);
  EXPECT_EQ(tree.ArgMin(), 0);
  tree.Clear(0);
  tree.Clear(2);
  EXPECT_EQ(tree.size(), 0);
  EXPECT_EQ(tree.ArgMin(), -1);
}

TEST(MinTreeTest, NegativeAndInfinitePriorities) {
  MinTree tree(4);
  tree.Set(0, std::numeric_limits<double>::infinity(), 0);
  EXPECT_EQ(tree.ArgMin(), 0);  // infinite, but not empty
  tree.Set(3, -std::numeric_limits<double>::infinity(), 5);
  tree.Set(1, -1.0, 1);
  EXPECT_EQ(tree.ArgMin(), 3);
  tree.Clear(3);
  EXPECT_EQ(tree.ArgMin(), 1);
}

struct ModelSlot {
  double priority;
  uint64_t age;
};

int64_t BruteForceArgMin(const std::vector<std::optional<ModelSlot>>& model) {
  int64_t best = -1;
  for (size_t i = 0; i < model.size(); ++i) {
    if (!model[i]) continue;
    if (best < 0 || model[i]->priority < model[best]->priority ||
        (model[i]->priority == model[best]->priority && model[i]->age < model[best]->age)) {
      best = static_cast<int64_t>(i);
    }
  }
  return best;
}

TEST(MinTreeTest, RandomOperationsMatchBruteForce) {
  std::mt19937_64 gen(23);
  for (int64_t capacity : {1, 2, 3, 5, 64, 300}) {
    MinTree tree(capacity);
    std::vector<std::optional<ModelSlot>> model(capacity);
    uint64_t clock = 0;
    for (int op = 0; op < 40000; ++op) {
      const int64_t i = static_cast<int64_t>(gen() % capacity);
      const uint64_t kind = gen() % 10;
      if (kind < 3) {
        tree.Clear(i);
        model[i].reset();
      } else {
        // Few distinct priorities and repeated ages, so ties on both are common.
        const double priority = static_cast<double>(gen() % 5) * 0.5;
        const uint64_t age = kind < 6 ? clock++ : gen() % 4;
        tree.Set(i, priority, age);
        model[i] = ModelSlot{priority, age};
      }
      int64_t size = 0;
      for (const auto& slot : model) size += slot.has_value();
      ASSERT_EQ(tree.size(), size);
      ASSERT_EQ(tree.ArgMin(), BruteForceArgMin(model)) << "capacity " << capacity << " op " << op;
      ASSERT_EQ(tree.Contains(i), model[i].has_value());
      if (model[i]) {
        ASSERT_EQ(tree.priority(i), model[i]->priority);
        ASSERT_EQ(tree.age(i), model[i]->age);
      }
    }
  }
}

TEST(MinTreeDeathTest, RejectsProgrammerErrors) {
  EXPECT_DEATH(MinTree(0), "capacity");
  MinTree tree(3);
  EXPECT_DEATH(tree.Set(3, 1.0, 0), "index 3");
  EXPECT_DEATH(tree.Set(-1, 1.0, 0), "index -1");
  EXPECT_DEATH(tree.Set(0, std::nan(""), 0), "NaN");
  EXPECT_DEATH(tree.Clear(3), "index 3");
  EXPECT_DEATH(tree.priority(1), "empty");
}

}  // namespace
}  // namespace engram::replay
