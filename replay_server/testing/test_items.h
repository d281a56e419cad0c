#ifndef ENGRAM_REPLAY_SERVER_TESTING_TEST_ITEMS_H_
#define ENGRAM_REPLAY_SERVER_TESTING_TEST_ITEMS_H_

// Helpers for the replay server's tests. Small, valid replay items: transitions whose observations
// are uint8 [rows, 3] grids (rows = 2 by default) filled with one value, and actions in
// [0, 4).

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/server.h"
#include "engram/v1/replay.pb.h"
#include "grpcpp/create_channel.h"

namespace engram::replay::testing {

// A uint8 [rows, 3] observation with every element equal to `value` (mod 256).
inline v1::Tensor TestObservation(int value, int rows = 2) {
  v1::Tensor t;
  t.set_dtype(v1::DTYPE_UINT8);
  t.add_shape(rows);
  t.add_shape(3);
  t.set_data(std::string(rows * 3, static_cast<char>(value)));
  return t;
}

// A one-step transition keyed `key`: observation `obs`, next observation `next_obs`
// (by default key and key + 1), action key % 4, reward 1, discount 0.99.
inline v1::Item TestTransition(uint64_t key, double priority = 1.0, int obs = -1,
                               int next_obs = -1) {
  v1::Item item;
  item.set_key(key);
  item.set_priority(priority);
  v1::Transition* t = item.mutable_transition();
  *t->mutable_observation() = TestObservation(obs >= 0 ? obs : static_cast<int>(key));
  *t->mutable_next_observation() =
      TestObservation(next_obs >= 0 ? next_obs : static_cast<int>(key) + 1);
  t->set_action(static_cast<int>(key % 4));
  t->set_reward(1.0f);
  t->set_discount(0.99f);
  t->set_steps(1);
  return item;
}

// Server options listening on 127.0.0.1:`port` (0 picks a free port).
inline ServerOptions Loopback(int port = 0) {
  ServerOptions options;
  options.address = absl::StrCat("127.0.0.1:", port);
  return options;
}

// A TCP channel to 127.0.0.1:`port` that reconnects quickly (gRPC's own connection backoff
// starts at 1 s), for tests that restart a server.
inline std::shared_ptr<grpc::Channel> FastReconnectChannel(int port) {
  grpc::ChannelArguments args = MakeChannelArguments(ChannelOptions());
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

}  // namespace engram::replay::testing

#endif  // ENGRAM_REPLAY_SERVER_TESTING_TEST_ITEMS_H_
