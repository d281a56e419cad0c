#include "actor/episodic_actor.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace engram::actor {
namespace {

TEST(RandomProjectionTest, SameSeedSameKeysAndLinear) {
  const RandomProjection a(6, 4, 42), b(6, 4, 42), c(6, 4, 43);
  const std::vector<uint8_t> obs = {0, 1, 0, 0, 1, 0};
  std::vector<float> ka(4), kb(4), kc(4);
  a.Project(obs.data(), false, ka.data());
  b.Project(obs.data(), false, kb.data());
  c.Project(obs.data(), false, kc.data());
  EXPECT_EQ(ka, kb);  // every actor of an experiment projects alike
  EXPECT_NE(ka, kc);
  // Linear: the float path with the same values, doubled, gives twice the key.
  std::vector<float> doubled(6);
  for (int i = 0; i < 6; ++i) doubled[i] = 2.0f * obs[i];
  std::vector<float> kd(4);
  a.Project(reinterpret_cast<const uint8_t*>(doubled.data()), true, kd.data());
  for (int d = 0; d < 4; ++d) EXPECT_FLOAT_EQ(kd[d], 2 * ka[d]);
  // All zeros map to the zero key.
  const std::vector<uint8_t> zeros(6, 0);
  a.Project(zeros.data(), false, kc.data());
  EXPECT_EQ(kc, std::vector<float>(4, 0));
}

TEST(EpisodicMemorySpecTest, FromTheExperiment) {
  v1::ExperimentSpec spec;
  spec.set_id("breakout-ec-2");
  spec.mutable_episodic_control()->set_key_dim(32);
  spec.mutable_episodic_control()->set_k(11);
  const v1::MemorySpec memory = EpisodicMemorySpec(spec, 6);
  EXPECT_EQ(memory.name(), "ec_breakout_ec_2");  // [a-z0-9_] only
  EXPECT_EQ(memory.key_dim(), 32);
  EXPECT_EQ(memory.num_actions(), 6);
  EXPECT_EQ(memory.default_k(), 11);
  EXPECT_EQ(memory.capacity_per_action(), 1000000);
  EXPECT_EQ(memory.update_rule(), v1::UPDATE_RULE_MFEC_MAX);
  EXPECT_EQ(memory.kernel(), v1::KERNEL_MEAN);
  EXPECT_EQ(memory.index(), v1::INDEX_KIND_APPROXIMATE);
}

}  // namespace
}  // namespace engram::actor
