#include "deploy/cli/commands.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/text_proto.h"
#include "deploy/cli/format.h"
#include "engram/v1/experiment.grpc.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/time_util.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace engram::cli {
namespace {

namespace fs = std::filesystem;

int ExitCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 0;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return 2;
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 3;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 4;
    default:
      return 1;
  }
}

int ExitCode(v1::ExperimentState state) {
  switch (state) {
    case v1::EXPERIMENT_STATE_SUCCEEDED:
      return 0;
    case v1::EXPERIMENT_STATE_CANCELLED:
      return 5;
    default:
      return 1;
  }
}

// Prints a failed call's error and returns its exit code. A list of spec problems
// ("a: x; b: y") gets one line each.
int Fail(const ClientOptions& options, const std::string& what, const grpc::Status& status) {
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    message = absl::StrReplaceAll(message, {{"; ", "\n  "}});
    std::fprintf(stderr, "engram: %s: the server rejected it:\n  %s\n", what.c_str(),
                 message.c_str());
  } else if (ExitCode(status.error_code()) == 4 && what == "health") {
    std::fprintf(stderr, "engram: health: cannot reach %s (%s)\n", options.server.c_str(),
                 message.c_str());
  } else if (ExitCode(status.error_code()) == 4) {
    std::fprintf(stderr,
                 "engram: %s: cannot reach the learner at %s (%s); is the cluster up? (--server "
                 "or ENGRAM_SERVER name it)\n",
                 what.c_str(), options.server.c_str(), message.c_str());
  } else {
    std::fprintf(stderr, "engram: %s: %s\n", what.c_str(), message.c_str());
  }
  return ExitCode(status.error_code());
}

std::unique_ptr<v1::ExperimentService::Stub> Stub(const ClientOptions& options) {
  ChannelOptions channel_options;
  channel_options.tls = options.tls;
  channel_options.auth_token = options.auth_token;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateChannel(options.server, channel_options);
  if (!channel.ok()) {
    std::fprintf(stderr, "engram: --server: %s\n", std::string(channel.status().message()).c_str());
    return nullptr;
  }
  return v1::ExperimentService::NewStub(*channel);
}

void SetDeadline(grpc::ClientContext& context, const ClientOptions& options) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
}

// Follows an experiment until it ends; survives learner restarts by watching again.
int Follow(const ClientOptions& options, v1::ExperimentService::Stub& stub, const std::string& id,
           absl::Duration interval) {
  v1::ExperimentStatus last;
  absl::Time unreachable_since = absl::InfinitePast();
  while (true) {
    grpc::ClientContext context;
    v1::WatchExperimentRequest request;
    request.set_id(id);
    *request.mutable_min_interval() =
        google::protobuf::util::TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(interval));
    std::unique_ptr<grpc::ClientReader<v1::ExperimentStatus>> reader =
        stub.Watch(&context, request);
    v1::ExperimentStatus status;
    while (reader->Read(&status)) {
      unreachable_since = absl::InfinitePast();
      if (status.has_spec()) {
        *last.mutable_spec() = status.spec();
      }
      const v1::ExperimentSpec spec = last.spec();
      last = status;
      *last.mutable_spec() = spec;
      std::printf("%s\n", ProgressLine(status).c_str());
      std::fflush(stdout);
    }
    const grpc::Status end = reader->Finish();
    if (end.ok()) {
      std::printf("\n%s", StatusText(last).c_str());
      return ExitCode(last.state());
    }
    if (end.error_code() != grpc::StatusCode::UNAVAILABLE) return Fail(options, "watch", end);
    // The learner restarted or the network dropped: watch again.
    if (unreachable_since == absl::InfinitePast()) {
      unreachable_since = absl::Now();
      std::fprintf(stderr, "engram: learner unavailable (%s); watching again\n",
                   end.error_message().c_str());
    } else if (absl::Now() - unreachable_since > absl::Minutes(10)) {
      return Fail(options, "watch", end);
    }
    absl::SleepFor(absl::Seconds(2));
  }
}

}  // namespace

v1::ExperimentState ParseState(const std::string& text) {
  std::string upper = absl::AsciiStrToUpper(text);
  if (!absl::StartsWith(upper, "EXPERIMENT_STATE_")) upper = "EXPERIMENT_STATE_" + upper;
  v1::ExperimentState state = v1::EXPERIMENT_STATE_UNSPECIFIED;
  if (!v1::ExperimentState_Parse(upper, &state)) return v1::EXPERIMENT_STATE_UNSPECIFIED;
  return state;
}

int Submit(const ClientOptions& options, const std::string& spec_path, const std::string& id,
           bool validate_only, bool watch, absl::Duration interval) {
  v1::SubmitExperimentRequest request;
  absl::Status read = ReadTextProtoFile(spec_path, request.mutable_spec());
  if (!read.ok()) {
    std::fprintf(stderr, "engram: %s\n", std::string(read.message()).c_str());
    return 2;
  }
  if (!id.empty()) request.mutable_spec()->set_id(id);
  request.set_validate_only(validate_only);
  std::unique_ptr<v1::ExperimentService::Stub> stub = Stub(options);
  if (stub == nullptr) return 2;
  grpc::ClientContext context;
  SetDeadline(context, options);
  v1::SubmitExperimentResponse response;
  const grpc::Status status = stub->Submit(&context, request, &response);
  if (!status.ok()) return Fail(options, spec_path, status);
  if (validate_only) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(response.resolved_spec(), &text);
    std::printf("# %s is valid; resolved (every default filled in):\n%s", spec_path.c_str(),
                text.c_str());
    return 0;
  }
  std::printf("submitted %s\n", response.id().c_str());
  std::fflush(stdout);
  if (!watch) return 0;
  return Follow(options, *stub, response.id(), interval);
}

int List(const ClientOptions& options, const std::vector<v1::ExperimentState>& states) {
  std::unique_ptr<v1::ExperimentService::Stub> stub = Stub(options);
  if (stub == nullptr) return 2;
  v1::ListExperimentsRequest request;
  for (v1::ExperimentState state : states) request.add_states(state);
  std::printf("%-32s %-10s %9s %9s %9s %9s  %s\n", "ID", "STATE", "FRAMES", "UPDATES", "TRAIN",
              "EVAL", "SUBMITTED");
  int count = 0;
  do {
    grpc::ClientContext context;
    SetDeadline(context, options);
    v1::ListExperimentsResponse page;
    const grpc::Status status = stub->List(&context, request, &page);
    if (!status.ok()) return Fail(options, "list", status);
    for (const v1::ExperimentStatus& s : page.experiments()) {
      std::printf("%-32s %-10s %9s %9s %9s %9s  %s\n", s.id().c_str(), StateText(s.state()).c_str(),
                  Compact(s.frames()).c_str(), Compact(s.learner_updates()).c_str(),
                  ReturnText(s.train_return()).c_str(), ReturnText(s.eval_return()).c_str(),
                  google::protobuf::util::TimeUtil::ToString(s.create_time()).c_str());
      ++count;
    }
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  if (count == 0) std::printf("(no experiments)\n");
  return 0;
}

int Status(const ClientOptions& options, const std::string& id, bool watch, absl::Duration interval,
           bool textproto) {
  std::unique_ptr<v1::ExperimentService::Stub> stub = Stub(options);
  if (stub == nullptr) return 2;
  if (watch) return Follow(options, *stub, id, interval);
  grpc::ClientContext context;
  SetDeadline(context, options);
  v1::GetExperimentRequest request;
  request.set_id(id);
  v1::ExperimentStatus status;
  const grpc::Status result = stub->Get(&context, request, &status);
  if (!result.ok()) return Fail(options, id, result);
  if (textproto) {
    std::string text;
    google::protobuf::TextFormat::PrintToString(status, &text);
    std::printf("%s", text.c_str());
  } else {
    std::printf("%s", StatusText(status).c_str());
  }
  return 0;
}

int Cancel(const ClientOptions& options, const std::string& id, const std::string& reason) {
  std::unique_ptr<v1::ExperimentService::Stub> stub = Stub(options);
  if (stub == nullptr) return 2;
  grpc::ClientContext context;
  SetDeadline(context, options);
  v1::CancelExperimentRequest request;
  request.set_id(id);
  request.set_reason(reason);
  v1::ExperimentStatus status;
  const grpc::Status result = stub->Cancel(&context, request, &status);
  if (!result.ok()) return Fail(options, id, result);
  if (status.state() == v1::EXPERIMENT_STATE_RUNNING) {
    std::printf("%s: cancel requested; it checkpoints and stops (engram status %s --watch)\n",
                id.c_str(), id.c_str());
  } else {
    std::printf("%s: %s\n", id.c_str(), StateText(status.state()).c_str());
  }
  return 0;
}

int Results(const ClientOptions& options, const std::string& id, const std::string& out_dir,
            const std::vector<std::string>& names) {
  std::unique_ptr<v1::ExperimentService::Stub> stub = Stub(options);
  if (stub == nullptr) return 2;
  v1::ListResultsResponse listed;
  {
    grpc::ClientContext context;
    SetDeadline(context, options);
    v1::ListResultsRequest request;
    request.set_id(id);
    const grpc::Status status = stub->ListResults(&context, request, &listed);
    if (!status.ok()) return Fail(options, id, status);
  }
  std::vector<std::string> wanted = names;
  if (wanted.empty()) {
    for (const v1::ResultFile& file : listed.files()) wanted.push_back(file.name());
  }
  std::error_code error;
  fs::create_directories(out_dir, error);
  if (error) {
    std::fprintf(stderr, "engram: --out_dir: cannot create %s: %s\n", out_dir.c_str(),
                 error.message().c_str());
    return 2;
  }
  for (const std::string& name : wanted) {
    const fs::path path = fs::path(out_dir) / name;
    // Names come from the server: only relative names inside out_dir are written.
    if (fs::path(name).is_absolute() ||
        fs::path(name).lexically_normal().string().find("..") != std::string::npos) {
      std::fprintf(stderr, "engram: refusing result name %s\n", name.c_str());
      return 1;
    }
    fs::create_directories(path.parent_path(), error);
    const std::string partial = path.string() + ".part";
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout * 30));
    v1::ReadResultRequest request;
    request.set_id(id);
    request.set_name(name);
    std::unique_ptr<grpc::ClientReader<v1::ResultChunk>> reader =
        stub->ReadResult(&context, request);
    v1::ResultChunk chunk;
    int64_t bytes = 0;
    while (reader->Read(&chunk)) {
      out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      bytes += static_cast<int64_t>(chunk.data().size());
    }
    const grpc::Status status = reader->Finish();
    out.close();
    if (!status.ok()) {
      fs::remove(partial, error);
      return Fail(options, name, status);
    }
    if (!out) {
      std::fprintf(stderr, "engram: cannot write %s\n", partial.c_str());
      return 1;
    }
    fs::rename(partial, path, error);
    if (error) {
      std::fprintf(stderr, "engram: cannot rename %s: %s\n", partial.c_str(),
                   error.message().c_str());
      return 1;
    }
    std::printf("%-28s %10lld bytes -> %s\n", name.c_str(), static_cast<long long>(bytes),
                path.c_str());
  }
  return 0;
}

int Health(const ClientOptions& options) {
  ChannelOptions channel_options;
  channel_options.tls = options.tls;
  channel_options.auth_token = options.auth_token;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateChannel(options.server, channel_options);
  if (!channel.ok()) {
    std::fprintf(stderr, "engram: --address: %s\n",
                 std::string(channel.status().message()).c_str());
    return 2;
  }
  auto stub = grpc::health::v1::Health::NewStub(*channel);
  grpc::ClientContext context;
  SetDeadline(context, options);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return Fail(options, "health", status);
  const std::string state =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  std::printf("%s: %s\n", options.server.c_str(), state.c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace engram::cli
