#include "tools/teclctl/cli.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/client/backoff.h"
#include "services/client/grpc_coordinator_client.h"
#include "services/common/auth.h"
#include "services/common/client_flags.h"
#include "services/common/flags.h"
#include "services/common/logging.h"
#include "services/coordinator/spec/job_spec.h"
#include "services/coordinator/state/job_state.h"
#include "services/coordinator/state/stragglers.h"
#include "tools/teclctl/format.h"
#include "tools/teclctl/local_cluster.h"
#include "tools/teclctl/local_secrets.h"

extern char** environ;

ABSL_FLAG(std::string, output, "text", "Output format: text or json (protobuf JSON)");
ABSL_FLAG(bool, wait, false, "submit: wait for the job to finish, showing progress on stderr");
ABSL_FLAG(bool, follow, false,
          "events, logs: keep printing new events or lines until the job finishes (-f)");
ABSL_FLAG(std::string, state, "",
          "list: only jobs in these states (comma-separated, e.g. running,pending)");
ABSL_FLAG(int, limit, 50, "list: at most this many jobs, newest first (0 = all)");
ABSL_FLAG(std::string, reason, "", "cancel: why, recorded in the job's events");
ABSL_FLAG(std::string, request_id, "",
          "submit: idempotency key (default: a random one; retries reuse it)");
ABSL_FLAG(absl::Duration, timeout, absl::ZeroDuration(),
          "submit --wait / events -f: give up after this long (0 = no limit)");
ABSL_FLAG(absl::Duration, rpc_timeout, absl::Seconds(10),
          "Deadline of each call to the coordinator");
ABSL_FLAG(std::string, home, "",
          "local: state folder of the local cluster (default $TECL_HOME or ./.tecl)");
ABSL_FLAG(int, trainers, 1, "local up: trainer worker processes");
ABSL_FLAG(int, dataloaders, 1, "local up: dataloader processes");
ABSL_FLAG(int, threads, 2, "local up: threads of each trainer and dataloader");
ABSL_FLAG(std::string, checkpoint_roots, "",
          "local up: comma-separated folders job specs may name as checkpoint.dir");
ABSL_FLAG(std::string, write_roots, "",
          "local up: comma-separated folders prepare jobs may write under (the dataloaders' "
          "--write_root)");
ABSL_FLAG(bool, once, false, "top: print the table once and exit");
ABSL_FLAG(absl::Duration, interval, absl::Seconds(2), "top: time between refreshes");
ABSL_FLAG(double, straggler_factor, tecl::coordinator::kDefaultStragglerFactor,
          "top: flag a rank whose own step time exceeds this times its job's other ranks' median");
ABSL_FLAG(std::string, format, "torch",
          "export: torch (a torch.save state dict with torchvision's names) or torchscript (tiny3d)");
ABSL_FLAG(std::string, out, "", "export: the file to write");
ABSL_FLAG(int64_t, step, 0, "export: the checkpoint step to export (0 = the newest)");
ABSL_FLAG(int, rank, -1, "logs: only this rank's lines (-1 = every rank)");
ABSL_FLAG(int, tail, 0, "logs: only the newest N lines (0 = every line the coordinator holds)");
ABSL_FLAG(bool, random_init, false, "eval: evaluate a randomly initialised encoder of the job's backbone (the baseline)");

namespace tecl::teclctl {
namespace {

constexpr char kOverview[] =
    R"(teclctl: submit and watch TECL pretraining and evaluation jobs, run a local cluster.

Usage: teclctl [--coordinator HOST:PORT] [--output text|json] COMMAND [ARGS] [FLAGS]

Commands:
  submit FILE [--wait] [--set path=value]...  validate a YAML job spec and submit it
  prepare FILE [--wait]                       rewrite a data set for fast loading (kind: prepare)
  eval JOB_ID [--random_init] [--wait]        evaluate a pretraining job's encoder (or random init)
  list [--state S,...] [--limit N]            jobs, newest first
  status ID                                   one job: state, progress, placement, results, spec
  cancel ID [--reason TEXT]                   stop a job and free its workers
  events ID [-f]                              a job's events; -f follows until it finishes
  logs ID [--rank R] [--tail N] [-f]          a job's trainer logs; -f follows until it finishes
  workers                                     registered trainers and dataloaders
  top [--once]                                running ranks: step time, data wait, stragglers
  export JOB_ID --out FILE [--format F]       a job's encoder as a PyTorch state dict/TorchScript
  local up|down|status                        a coordinator, dataloaders and trainers on this machine

Flags for every command:
  --coordinator HOST:PORT  the coordinator (default: $TECL_COORDINATOR, else the local cluster's,
                           else 127.0.0.1:7070)
  --token_file FILE        bearer token (default: $TECL_AUTH_TOKEN)
  --tls_ca FILE            use TLS, verifying the coordinator with this CA
  --output text|json       json prints the protobuf JSON of the reply
  --rpc_timeout D          deadline of each call (default 10s)

Exit codes: 0 ok (submit --wait: succeeded), 1 the request failed, 2 usage error,
  3 cannot reach the coordinator, 4 invalid spec or request, 5 no such job,
  6 the job failed, 7 the job was cancelled.

`teclctl COMMAND --help` describes one command.
)";

const std::map<std::string, std::string>& CommandHelp() {
  static const auto* help = new std::map<std::string, std::string>{
      {"submit", R"(teclctl submit FILE [--wait] [--set path.to.field=value]... [--request_id ID]

Reads the YAML job spec FILE (docs/job-spec.md; examples/), fills every absent field with its
default, checks it, and submits it. Prints the new job's id on stdout.
  --set path=value   override a field, e.g. --set resources.trainers=4 --set eval.source_job_id=job-000001
  --wait             follow the job to its end with a progress bar on stderr (step/total, loss,
                     clips/s, ETA, state); exit 0 when it succeeds, 6 when it fails, 7 when cancelled
  --timeout D        with --wait: give up after D (exit 1)
Relative paths in the spec (dataset.root, checkpoint.dir, eval.checkpoint) are resolved against the
current directory. The job's name defaults to the file's name.
)"},
      {"prepare", R"(teclctl prepare FILE [--wait] [--set path.to.field=value]...

Submits a prepare job (docs/prepare.md): the cluster's dataloaders rewrite the data set of FILE's
`dataset` into a training-ready copy under `prepare.output_root` (short side, keyframe interval,
fast-decode H.264, the stored index, the lists rewritten), one shard each. FILE must say
`kind: prepare`; this is `teclctl submit` for such a file. A loader lost mid-job is replaced by
the next attempt, which keeps the finished videos. Point a pretraining spec's dataset.root at the
copy afterwards.
  --wait      follow it with a progress bar (videos done/total, new, kept, failed, videos/s, ETA)
  --set path=value, --timeout D, --request_id ID   as for submit
The dataloaders must have been started with --write_root covering prepare.output_root.
)"},
      {"eval", R"(teclctl eval JOB_ID [--random_init] [--wait] [--set path=value]...

Submits an evaluation of pretraining job JOB_ID: its newest checkpoint's encoder (once the job has
finished), or with --random_init a randomly initialised encoder of the same backbone (the
baseline). Features of eval.clips_per_video centre clips per video, averaged; retrieval recall@k
(test split as queries, train split as gallery, cosine) and a linear probe. Uses the job's data
set, backbone, device and seed; --set overrides any field (e.g. --set eval.clips_per_video=5).
Prints the evaluation job's id; --wait follows it and prints the results (also in teclctl status).
)"},
      {"list", R"(teclctl list [--state running,pending,...] [--limit N]

Jobs, newest first: id, name, kind, state, progress, age, reason.
  --state S,...   only jobs in these states (pending, scheduled, running, recovering, succeeded,
                  failed, cancelled)
  --limit N       at most N jobs (default 50; 0 = all)
)"},
      {"status", R"(teclctl status ID

One job: state and why, attempt and restarts, progress and losses, newest checkpoint, placement
of its ranks, evaluation results (eval jobs), and its full spec as YAML.
)"},
      {"cancel", R"(teclctl cancel ID [--reason TEXT]

Cancels a job: it becomes CANCELLED at once, its trainers are told to stop and its workers are
freed. A job that already finished cannot be cancelled (exit 1).
)"},
      {"events", R"(teclctl events ID [-f|--follow] [--timeout D]

The job's events, oldest first: state changes with their reasons, checkpoints, lost workers.
  -f, --follow   keep printing new events until the job finishes
)"},
      {"logs", R"(teclctl logs ID [--rank R] [--tail N] [-f|--follow] [--timeout D]

The job's trainer log lines, oldest first, each prefixed with its rank and attempt. Trainers send
what they log while they run a job to the coordinator with their heartbeats, so this works from
anywhere the coordinator is reachable, with no access to the trainers' machines, and still shows
the last lines of a trainer that died. The coordinator holds the newest 8 MiB per job, in memory
(a restarted coordinator starts afresh; the trainers' own stderr keeps everything).
  --rank R       only rank R's lines
  --tail N       only the newest N lines
  -f, --follow   keep printing new lines until the job finishes (polls every second)
  --timeout D    with -f: give up after D (exit 1)
With --output json each log line is printed as a LogLine object in protobuf JSON (its text in
base64, as bytes are).
)"},
      {"workers", R"(teclctl workers

Registered trainers and dataloaders: id, kind, state (idle, busy, lost), host, device, the job and
rank they work on, time since their last heartbeat, address.
)"},
      {"top", R"(teclctl top [--once] [--interval D] [--straggler_factor F]

A live table of every running rank, refreshed every --interval (default 2s) until Ctrl-C; --once
prints it once. Per rank, from its latest heartbeat: step, step time and steps/s, its own time
(the step without the all-reduce: compute plus data wait), the share of a step spent waiting for
batches (DATA WAIT: add dataloaders) and in the gradient all-reduce (ALL-REDUCE: the network, or
waiting for a slow peer), heartbeat age, and STRAGGLER for a rank whose own time exceeds F
(default 1.5) times the median of its job's other ranks: in synchronous training every rank waits
for it. The coordinator counts stragglers in tecl_coordinator_straggler_ranks; the alert
TeclStragglerRank fires on the trainers' own metrics.
)"},
      {"export", R"(teclctl export JOB_ID --out FILE [--format torch|torchscript] [--step N]

Writes a pretraining job's encoder in a format PyTorch loads (runs tecl-export, found like the
local cluster's binaries). The encoder comes from the job's newest checkpoint (its SHA-256
checked against the one the coordinator registered), or with --step N from that step's files in
the job's checkpoint folder (their own checksum checked).
  --format torch        (default) a torch.save state dict with torchvision's parameter names:
                          m = torchvision.models.video.r2plus1d_18()   # or r3d_18
                          m.load_state_dict(torch.load(FILE), strict=False)  # misses only fc.*
                        tiny3d's names are its own (features.N.*)
  --format torchscript  tiny3d only: torch.jit.load(FILE)(x) gives the features
Inputs are float clips (N, 3, T, H, W), RGB in [0, 1] normalised with the ImageNet mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), as in training. The file is written next to
FILE and renamed into place. Reads the checkpoint folder directly: run it where that folder is
mounted.
)"},
      {"local", R"(teclctl local up [--trainers M] [--dataloaders N] [--threads T] [--home DIR]
                [--checkpoint_roots DIR,...] [--write_roots DIR,...]
teclctl local down [--home DIR]
teclctl local status [--home DIR]

Runs tecl-coordinator, N tecl-dataloader and M tecl-worker processes on this machine in the
background. Their state, logs and pid files live in DIR (default $TECL_HOME, else ./.tecl); the
coordinator listens on 127.0.0.1 on a free port, which later teclctl commands find by themselves.
`up` returns once the coordinator answers and every worker registered. Binaries are looked up in
$TECL_LOCAL_BIN_DIR, next to teclctl, then on PATH. `down` stops every process (state is kept).
The cluster is secured like a shared one: `up` creates DIR/secrets once (a CA for this cluster,
a certificate and a token per role, the auth file; files 0600) and every process speaks mutual
TLS; teclctl calls it with the `user` credentials from there. Specs may name a checkpoint.dir only
under --checkpoint_roots (relative folders are taken from the current directory); without one,
checkpoints go to DIR/state/checkpoints/<job id>. Prepare jobs (teclctl prepare) may write only
under --write_roots (the dataloaders' --write_root); without one they are refused.
)"},
  };
  return *help;
}

std::string RandomRequestId() {
  std::random_device device;
  return absl::StrFormat("teclctl-%08x%08x", device(), device());
}

bool ArgGiven(const std::vector<std::string>& args, absl::string_view flag) {
  for (const std::string& arg : args) {
    if (arg == absl::StrCat("--", flag) || absl::StartsWith(arg, absl::StrCat("--", flag, "=")) ||
        arg == absl::StrCat("-", flag) || absl::StartsWith(arg, absl::StrCat("-", flag, "="))) {
      return true;
    }
  }
  return false;
}

class Cli {
 public:
  Cli(std::string address, ChannelOptions channel_options)
      : address_(std::move(address)), channel_options_(std::move(channel_options)) {
    json_ = absl::GetFlag(FLAGS_output) == "json";
  }

  int Dispatch(const std::vector<std::string>& args, const std::vector<std::string>& overrides);

 private:
  // The coordinator's client (made on first use); null when the channel cannot be built (the
  // reason is in client_error_).
  CoordinatorClient* client() {
    if (client_ == nullptr && client_error_.ok()) {
      absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
          MakeChannel(address_, channel_options_);
      if (!channel.ok()) {
        client_error_ = channel.status();
        return nullptr;
      }
      ClientOptions options;
      options.rpc_timeout = absl::GetFlag(FLAGS_rpc_timeout);
      options.max_attempts = 3;  // Submits carry a request id: retrying them is safe.
      client_ = NewCoordinatorClient(*channel, options);
    }
    return client_.get();
  }
  // Prints why a call failed and returns the exit code.
  int Fail(const absl::Status& status, absl::string_view what) const;
  int Usage(const std::string& message) const {
    std::cerr << "teclctl: " << message << "\n(see `teclctl --help`)\n";
    return kExitUsage;
  }

  // `required_kind` (unless unspecified): the spec must be of that kind (teclctl prepare).
  int Submit(const std::vector<std::string>& args, const std::vector<std::string>& overrides,
             tecl::v1::JobKind required_kind = tecl::v1::JOB_KIND_UNSPECIFIED);
  // Submits a parsed spec (and with --wait follows it); shared by submit and eval.
  int SubmitSpec(const tecl::v1::JobSpec& spec, const std::string& what);
  int Eval(const std::string& source_id, const std::vector<std::string>& overrides);
  int List();
  int Status(const std::string& id);
  int Cancel(const std::string& id);
  int Events(const std::string& id);
  int Logs(const std::string& id);
  int Workers();
  int Export(const std::string& id);
  int Top();
  int Local(const std::vector<std::string>& args);
  // Follows a job with WatchJob until it finishes, reconnecting when the stream breaks.
  // `on_update` sees every snapshot and its new events. Returns the final job.
  int Watch(const std::string& id, int64_t after_seq,
            const std::function<void(const tecl::v1::WatchJobResponse&)>& on_update,
            tecl::v1::Job* final_job);

  const std::string address_;
  const ChannelOptions channel_options_;
  bool json_ = false;
  std::shared_ptr<CoordinatorClient> client_;
  absl::Status client_error_;
};

int Cli::Fail(const absl::Status& status, absl::string_view what) const {
  const std::string message(status.message());
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      std::cerr << "teclctl: " << what << ": cannot reach the coordinator at " << address_ << " ("
                << message << "): is it running? Start one with `teclctl local up`, or pass "
                << "--coordinator HOST:PORT (or set TECL_COORDINATOR)\n";
      return kExitUnreachable;
    case absl::StatusCode::kUnauthenticated:
      std::cerr << "teclctl: " << what << ": " << message
                << " (pass --token_file FILE or set TECL_AUTH_TOKEN)\n";
      return kExitFailure;
    case absl::StatusCode::kInvalidArgument:
      std::cerr << "teclctl: " << what << ": " << message << "\n";
      return kExitInvalid;
    case absl::StatusCode::kNotFound:
      std::cerr << "teclctl: " << what << ": " << message << "\n";
      return kExitNotFound;
    default:
      std::cerr << "teclctl: " << what << ": " << message << "\n";
      return kExitFailure;
  }
}

int Cli::Dispatch(const std::vector<std::string>& args, const std::vector<std::string>& overrides) {
  const std::string& command = args[1];
  auto need = [&](size_t n, const char* what) {
    return args.size() == n + 2 ? 0 : Usage(absl::StrCat(command, " takes ", what));
  };
  if (!overrides.empty() && command != "submit" && command != "eval" && command != "prepare") {
    return Usage("--set is for submit, prepare and eval");
  }
  if (command == "eval") {
    if (int rc = need(1, "the id of a pretraining job: teclctl eval JOB_ID"); rc) return rc;
    return Eval(args[2], overrides);
  }
  if (command == "submit") {
    if (int rc = need(1, "one job spec file: teclctl submit FILE.yaml"); rc) return rc;
    return Submit(args, overrides);
  }
  if (command == "prepare") {
    if (int rc = need(1, "one prepare spec file: teclctl prepare FILE.yaml"); rc) return rc;
    return Submit(args, overrides, tecl::v1::JOB_KIND_PREPARE);
  }
  if (command == "list") {
    if (int rc = need(0, "no arguments"); rc) return rc;
    return List();
  }
  if (command == "status" || command == "cancel" || command == "events") {
    if (int rc = need(1, "one job id"); rc) return rc;
    if (command == "status") return Status(args[2]);
    if (command == "cancel") return Cancel(args[2]);
    return Events(args[2]);
  }
  if (command == "logs") {
    if (int rc = need(1, "one job id: teclctl logs JOB_ID [--rank R] [-f]"); rc) return rc;
    return Logs(args[2]);
  }
  if (command == "workers") {
    if (int rc = need(0, "no arguments"); rc) return rc;
    return Workers();
  }
  if (command == "top") {
    if (int rc = need(0, "no arguments"); rc) return rc;
    return Top();
  }
  if (command == "export") {
    if (int rc = need(1, "one job id: teclctl export JOB_ID --out FILE"); rc) return rc;
    return Export(args[2]);
  }
  if (command == "local") return Local(args);
  return Usage(absl::StrCat("unknown command \"", command, "\""));
}

int Cli::Submit(const std::vector<std::string>& args, const std::vector<std::string>& overrides,
                tecl::v1::JobKind required_kind) {
  const std::string& file = args[2];
  std::ifstream in(file);
  if (!in) {
    std::cerr << "teclctl: cannot read the job spec \"" << file << "\"; check the path\n";
    return kExitUsage;
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::string> yaml = coordinator::ApplyYamlOverrides(text.str(), overrides);
  if (!yaml.ok()) {
    std::cerr << "teclctl: " << file << ": " << yaml.status().message() << "\n";
    return kExitInvalid;
  }
  coordinator::ParseOptions parse;
  parse.default_name = std::filesystem::path(file).stem().string();
  parse.base_dir = std::filesystem::current_path().string();
  coordinator::SpecLimits limits;
  limits.max_trainers = 1 << 20;  // The cluster's limit is the coordinator's to check.
  absl::StatusOr<tecl::v1::JobSpec> spec = coordinator::LoadJobSpec(*yaml, parse, limits);
  if (!spec.ok()) {
    std::cerr << "teclctl: " << file << ": " << spec.status().message() << "\n";
    return kExitInvalid;
  }
  if (required_kind != tecl::v1::JOB_KIND_UNSPECIFIED && spec->kind() != required_kind) {
    std::cerr << "teclctl: " << file << ": kind is not prepare; teclctl prepare submits only "
              << "`kind: prepare` specs (use teclctl submit for the others)\n";
    return kExitInvalid;
  }
  return SubmitSpec(*spec, file);
}

int Cli::Eval(const std::string& source_id, const std::vector<std::string>& overrides) {
  if (client() == nullptr) return Fail(client_error_, "eval");
  absl::StatusOr<tecl::v1::Job> found = client()->GetJob(source_id);
  if (!found.ok()) return Fail(found.status(), absl::StrCat("eval ", source_id));
  const tecl::v1::Job& source = *found;
  if (source.spec().kind() != tecl::v1::JOB_KIND_PRETRAIN) {
    std::cerr << "teclctl: " << source_id << " is not a pretraining job; evaluate a pretraining job "
              << "(or submit an eval spec with teclctl submit)\n";
    return kExitInvalid;
  }
  const bool random = absl::GetFlag(FLAGS_random_init);
  // The source job's data set and backbone, evaluated on its train (gallery) and test (query)
  // splits by one trainer of its device kind.
  tecl::v1::JobSpec spec =
      coordinator::DefaultJobSpec(tecl::v1::JOB_KIND_EVAL, source.spec().model().backbone());
  spec.set_name(absl::StrCat(source.spec().name(), random ? "-random-init" : "-eval"));
  spec.set_seed(source.spec().seed());
  *spec.mutable_dataset() = source.spec().dataset();
  *spec.mutable_model() = source.spec().model();
  spec.mutable_resources()->set_device(source.spec().resources().device());
  spec.mutable_resources()->set_threads_per_trainer(source.spec().resources().threads_per_trainer());
  if (random) {
    spec.mutable_eval()->set_random_init(true);
  } else {
    spec.mutable_eval()->set_source_job_id(source_id);
  }
  absl::StatusOr<std::string> yaml =
      coordinator::ApplyYamlOverrides(coordinator::JobSpecToYaml(spec), overrides);
  if (!yaml.ok()) {
    std::cerr << "teclctl: eval " << source_id << ": " << yaml.status().message() << "\n";
    return kExitInvalid;
  }
  coordinator::SpecLimits limits;
  limits.max_trainers = 1 << 20;
  absl::StatusOr<tecl::v1::JobSpec> parsed = coordinator::LoadJobSpec(*yaml, {}, limits);
  if (!parsed.ok()) {
    std::cerr << "teclctl: eval " << source_id << ": " << parsed.status().message() << "\n";
    return kExitInvalid;
  }
  return SubmitSpec(*parsed, absl::StrCat("eval ", source_id));
}

int Cli::SubmitSpec(const tecl::v1::JobSpec& spec, const std::string& what) {
  if (client() == nullptr) return Fail(client_error_, "submit");
  const std::string request_id =
      absl::GetFlag(FLAGS_request_id).empty() ? RandomRequestId() : absl::GetFlag(FLAGS_request_id);
  absl::StatusOr<tecl::v1::Job> submitted = client()->SubmitJob(spec, request_id);
  if (!submitted.ok()) return Fail(submitted.status(), absl::StrCat("submit ", what));
  const tecl::v1::Job& job = *submitted;
  if (!absl::GetFlag(FLAGS_wait)) {
    if (json_) {
      std::cout << ToJson(job);
    } else {
      std::cout << job.id() << "\n";
      std::cerr << "submitted " << job.id() << " (" << job.spec().name()
                << "): " << StateText(job.state()) << ", " << job.reason() << "\n";
    }
    return kExitOk;
  }
  if (!json_) {
    std::cout << job.id() << std::endl;
    std::cerr << "submitted " << job.id() << " (" << job.spec().name() << ")\n";
  }
  // Progress: a redrawn line on a terminal, a line every few seconds otherwise.
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  absl::Time last_line = absl::InfinitePast();
  int64_t last_step = -1;
  bool drawn = false;
  tecl::v1::Job final_job;
  int rc = Watch(
      job.id(), 0,
      [&](const tecl::v1::WatchJobResponse& update) {
        for (const auto& event : update.events()) {
          if (drawn && tty) std::cerr << "\r\033[K";
          std::cerr << EventLine(event) << "\n";
          drawn = false;
        }
        const std::string line = ProgressLine(update.job());
        if (tty) {
          std::cerr << "\r\033[K" << line << std::flush;
          drawn = true;
        } else if (update.job().progress().step() != last_step &&
                   absl::Now() - last_line > absl::Seconds(5)) {
          std::cerr << line << "\n";
          last_line = absl::Now();
          last_step = update.job().progress().step();
        }
      },
      &final_job);
  if (drawn && tty) std::cerr << "\n";
  if (rc != kExitOk) return rc;
  if (json_) std::cout << ToJson(final_job);
  std::cerr << final_job.id() << " " << StateText(final_job.state()) << ": " << final_job.reason()
            << "\n";
  if (final_job.has_eval_result() && !json_)
    std::cerr << JobDetails(final_job, absl::ToUnixMillis(absl::Now()));
  switch (final_job.state()) {
    case tecl::v1::JOB_STATE_SUCCEEDED:
      return kExitOk;
    case tecl::v1::JOB_STATE_CANCELLED:
      return kExitJobCancelled;
    default:
      return kExitJobFailed;
  }
}

int Cli::Watch(const std::string& id, int64_t after_seq,
               const std::function<void(const tecl::v1::WatchJobResponse&)>& on_update,
               tecl::v1::Job* final_job) {
  if (client() == nullptr) return Fail(client_error_, absl::StrCat("watch ", id));
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  const absl::Time deadline =
      timeout > absl::ZeroDuration() ? absl::Now() + timeout : absl::InfiniteFuture();
  Backoff backoff(BackoffOptions{absl::Milliseconds(500), absl::Seconds(5), 2.0, 0.2});
  bool warned = false;
  while (true) {
    const absl::Status status = client()->WatchJob(
        id, after_seq,
        deadline == absl::InfiniteFuture() ? absl::ZeroDuration() : deadline - absl::Now(),
        [&](const tecl::v1::WatchJobResponse& update) {
          backoff.Reset();
          if (warned) std::cerr << "reconnected to the coordinator\n";
          warned = false;
          for (const auto& event : update.events()) after_seq = std::max(after_seq, event.seq());
          *final_job = update.job();
          on_update(update);
          return true;
        });
    if (coordinator::IsTerminal(final_job->state())) return kExitOk;
    if (absl::Now() >= deadline) {
      std::cerr << "teclctl: gave up waiting for " << id << " after "
                << absl::FormatDuration(timeout) << " (--timeout); it is "
                << StateText(final_job->state()) << "\n";
      return kExitFailure;
    }
    if (status.code() != absl::StatusCode::kUnavailable &&
        status.code() != absl::StatusCode::kCancelled && !status.ok()) {
      return Fail(status, absl::StrCat("watch ", id));
    }
    if (!warned) {
      std::cerr << "\nlost the coordinator at " << address_ << " (" << status.message()
                << "); reconnecting...\n";
      warned = true;
    }
    absl::SleepFor(backoff.Next());
  }
}

int Cli::List() {
  tecl::v1::ListJobsRequest request;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_state), ',', absl::SkipEmpty())) {
    bool found = false;
    for (int s = tecl::v1::JOB_STATE_PENDING; s <= tecl::v1::JOB_STATE_CANCELLED; ++s) {
      if (StateText(static_cast<tecl::v1::JobState>(s)) == name) {
        request.add_states(static_cast<tecl::v1::JobState>(s));
        found = true;
      }
    }
    if (!found) {
      return Usage(absl::StrCat("--state: \"", name,
                                "\" is not one of pending, scheduled, running, "
                                "recovering, succeeded, failed, cancelled"));
    }
  }
  const int limit = absl::GetFlag(FLAGS_limit);
  if (limit < 0) return Usage("--limit must be >= 0");
  if (client() == nullptr) return Fail(client_error_, "list");
  tecl::v1::ListJobsResponse all;
  while (true) {
    const int remaining = limit == 0 ? 1000 : limit - all.jobs_size();
    request.set_page_size(std::min(remaining, 1000));
    absl::StatusOr<tecl::v1::ListJobsResponse> listed = client()->ListJobs(request);
    if (!listed.ok()) return Fail(listed.status(), "list");
    tecl::v1::ListJobsResponse& page = *listed;
    for (auto& job : *page.mutable_jobs()) *all.add_jobs() = std::move(job);
    if (page.next_page_token().empty() || (limit > 0 && all.jobs_size() >= limit)) {
      all.set_next_page_token(page.next_page_token());
      break;
    }
    request.set_page_token(page.next_page_token());
  }
  if (json_) {
    std::cout << ToJson(all);
    return kExitOk;
  }
  if (all.jobs().empty()) {
    std::cout << "no jobs\n";
    return kExitOk;
  }
  const int64_t now = absl::ToUnixMillis(absl::Now());
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "KIND", "STATE", "STEP", "ATTEMPT", "SUBMITTED", "REASON"}};
  for (const auto& job : all.jobs()) {
    const auto* kind = tecl::v1::JobKind_descriptor()->FindValueByNumber(job.spec().kind());
    std::string reason = job.reason();
    if (reason.size() > 60) reason = reason.substr(0, 57) + "...";
    rows.push_back(
        {job.id(), job.spec().name(), kind ? coordinator::EnumValueShortName(*kind) : "?",
         StateText(job.state()),
         job.spec().kind() == tecl::v1::JOB_KIND_PRETRAIN
             ? absl::StrCat(job.progress().step(), "/", job.spec().schedule().total_steps())
             : "-",
         absl::StrCat(job.attempt()), Age(job.created_unix_ms(), now), reason});
  }
  std::cout << Table(rows);
  if (!all.next_page_token().empty()) std::cout << "(more: --limit 0 lists all)\n";
  return kExitOk;
}

int Cli::Status(const std::string& id) {
  if (client() == nullptr) return Fail(client_error_, "status");
  absl::StatusOr<tecl::v1::Job> found = client()->GetJob(id);
  if (!found.ok()) return Fail(found.status(), absl::StrCat("status ", id));
  const tecl::v1::Job& job = *found;
  if (json_) {
    std::cout << ToJson(job);
    return kExitOk;
  }
  std::cout << JobDetails(job, absl::ToUnixMillis(absl::Now())) << "\nSpec:\n";
  for (absl::string_view line :
       absl::StrSplit(coordinator::JobSpecToYaml(job.spec()), '\n', absl::SkipEmpty())) {
    std::cout << "  " << line << "\n";
  }
  return kExitOk;
}

int Cli::Cancel(const std::string& id) {
  if (client() == nullptr) return Fail(client_error_, "cancel");
  absl::StatusOr<tecl::v1::Job> cancelled = client()->CancelJob(id, absl::GetFlag(FLAGS_reason));
  if (!cancelled.ok()) return Fail(cancelled.status(), absl::StrCat("cancel ", id));
  const tecl::v1::Job& job = *cancelled;
  if (json_) {
    std::cout << ToJson(job);
  } else {
    std::cout << "cancelled " << job.id() << " (" << job.spec().name() << ")\n";
  }
  return kExitOk;
}

int Cli::Top() {
  const double factor = absl::GetFlag(FLAGS_straggler_factor);
  if (!(factor > 1)) return Usage("--straggler_factor must be > 1");
  const absl::Duration interval = absl::GetFlag(FLAGS_interval);
  if (interval < absl::Milliseconds(100)) return Usage("--interval must be at least 100ms");
  if (json_) return Usage("top has no JSON output; use `teclctl workers --output json`");
  if (client() == nullptr) return Fail(client_error_, "top");
  const bool once = absl::GetFlag(FLAGS_once);
  const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  while (true) {
    absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> workers =
        client()->ListWorkers(tecl::v1::WORKER_KIND_TRAINER);
    if (!workers.ok()) return Fail(workers.status(), "top");
    const int64_t now = absl::ToUnixMillis(absl::Now());
    if (terminal && !once) std::cout << "\x1b[H\x1b[2J";  // Home, clear.
    std::cout << "teclctl top  " << FormatTime(now) << "  coordinator " << address_ << "\n\n"
              << TopTable(*workers, now, factor) << std::flush;
    if (once) return kExitOk;
    absl::SleepFor(interval);
  }
}

int Cli::Export(const std::string& id) {
  const std::string format = absl::GetFlag(FLAGS_format);
  const std::string out = absl::GetFlag(FLAGS_out);
  const int64_t step = absl::GetFlag(FLAGS_step);
  if (out.empty()) return Usage("export needs --out FILE");
  if (format != "torch" && format != "torchscript") {
    return Usage(absl::StrCat("--format must be torch or torchscript, not \"", format, "\""));
  }
  if (step < 0) return Usage("--step must be 0 (the newest) or a checkpoint's step");
  absl::StatusOr<std::string> binary = FindBinary("tecl-export");
  if (!binary.ok()) return Fail(binary.status(), "export");
  if (client() == nullptr) return Fail(client_error_, "export");
  absl::StatusOr<tecl::v1::Job> job = client()->GetJob(id);
  if (!job.ok()) return Fail(job.status(), absl::StrCat("export ", id));
  if (job->spec().kind() != tecl::v1::JOB_KIND_PRETRAIN) {
    std::cerr << "teclctl: export: " << id << " is not a pretraining job; export the job it "
              << "evaluated\n";
    return kExitInvalid;
  }
  const tecl::v1::Checkpoint& latest = job->latest_checkpoint();
  if (latest.path().empty()) {
    std::cerr << "teclctl: export: job " << id << " has no checkpoint yet; export it once it "
              << "wrote one (teclctl status " << id << " shows the newest)\n";
    return kExitFailure;
  }
  // The newest checkpoint is checked against the digest the coordinator registered; an older
  // step's files in the same folder against their own.
  std::vector<std::string> args = {*binary, "--format=" + format, "--out=" + out,
                                   "--label=job " + id};
  if (step == 0 || step == latest.step()) {
    args.push_back("--encoder=" + latest.path());
    args.push_back("--sha256=" + latest.sha256());
  } else {
    args.push_back("--checkpoint_dir=" +
                   std::filesystem::path(latest.path()).parent_path().string());
    args.push_back(absl::StrCat("--step=", step));
  }
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (const int rc = posix_spawn(&pid, binary->c_str(), nullptr, nullptr, argv.data(), environ);
      rc != 0) {
    std::cerr << "teclctl: export: cannot run " << *binary << ": " << std::strerror(rc) << "\n";
    return kExitFailure;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);  // tecl-export uses teclctl's exit codes.
  std::cerr << "teclctl: export: " << *binary << " ended by signal "
            << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << "\n";
  return kExitFailure;
}

int Cli::Events(const std::string& id) {
  if (client() == nullptr) return Fail(client_error_, "events");
  absl::StatusOr<std::vector<tecl::v1::JobEvent>> events = client()->ListEvents(id, 0, 0);
  if (!events.ok()) return Fail(events.status(), absl::StrCat("events ", id));
  int64_t last = 0;
  for (const auto& event : *events) {
    last = std::max(last, event.seq());
    if (json_) {
      std::cout << ToJson(event);
    } else {
      std::cout << EventLine(event) << "\n";
    }
  }
  std::cout << std::flush;
  if (!absl::GetFlag(FLAGS_follow)) return kExitOk;
  tecl::v1::Job final_job;
  return Watch(
      id, last,
      [&](const tecl::v1::WatchJobResponse& update) {
        for (const auto& event : update.events()) {
          if (json_) {
            std::cout << ToJson(event);
          } else {
            std::cout << EventLine(event) << "\n";
          }
        }
        std::cout << std::flush;
      },
      &final_job);
}

int Cli::Logs(const std::string& id) {
  const int rank = absl::GetFlag(FLAGS_rank);
  const int tail = absl::GetFlag(FLAGS_tail);
  if (rank < -1) return Usage("--rank must be a rank (>= 0), or -1 for every rank");
  if (tail < 0) return Usage("--tail must be >= 0 (0 = every line held)");
  if (client() == nullptr) return Fail(client_error_, "logs");
  const std::string what = absl::StrCat("logs ", id);
  const bool follow = absl::GetFlag(FLAGS_follow);
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  const absl::Time deadline =
      timeout > absl::ZeroDuration() ? absl::Now() + timeout : absl::InfiniteFuture();
  // After the job ended, lines logged as its ranks finished arrive with their next heartbeats.
  constexpr absl::Duration kPoll = absl::Seconds(1);
  constexpr absl::Duration kAfterEnd = absl::Seconds(3);
  tecl::v1::GetJobLogsRequest request;
  request.set_job_id(id);
  if (rank >= 0) request.set_rank(rank);
  request.set_tail(tail);
  int64_t tail_id = 0;
  int64_t printed = 0;
  absl::Time ended_at = absl::InfiniteFuture();
  bool unreachable = false;
  while (true) {
    absl::StatusOr<tecl::v1::GetJobLogsResponse> page = client()->GetJobLogs(request);
    if (!page.ok()) {
      const bool transient = page.status().code() == absl::StatusCode::kUnavailable ||
                             page.status().code() == absl::StatusCode::kDeadlineExceeded;
      if (!follow || !transient || absl::Now() > deadline) return Fail(page.status(), what);
      if (!unreachable) {
        std::cerr << "teclctl: logs: the coordinator is unreachable (" << page.status().message()
                  << "); retrying\n";
      }
      unreachable = true;
      absl::SleepFor(kPoll);
      continue;
    }
    unreachable = false;
    if (tail_id != 0 && page->tail_id() != 0 && page->tail_id() != tail_id) {
      // The coordinator restarted (or dropped this job's tail): its cursors start again.
      std::cerr << "teclctl: logs: the coordinator's tail of " << id
                << " started afresh; reading it from its start\n";
      tail_id = page->tail_id();
      request.set_after_cursor(0);
      request.set_tail(0);
      continue;
    }
    if (page->tail_id() != 0) tail_id = page->tail_id();
    if (page->skipped() > 0) {
      std::cerr << "teclctl: logs: " << page->skipped()
                << " older lines are no longer held by the coordinator\n";
    }
    for (const tecl::v1::LogLine& line : page->lines()) {
      if (json_) {
        std::cout << ToJson(line);
      } else {
        std::cout << "[rank " << line.rank() << ", attempt " << line.attempt() << "] "
                  << EscapeControlCharacters(line.text()) << "\n";
      }
    }
    std::cout << std::flush;
    printed += page->lines_size();
    request.set_after_cursor(page->next_cursor());
    request.set_tail(0);
    if (page->more()) continue;
    if (!follow) {
      if (printed == 0 && page->skipped() == 0) {
        std::cerr << "teclctl: logs: no log lines of " << id
                  << " yet (trainers send them with their heartbeats while they run it)\n";
      }
      return kExitOk;
    }
    const absl::Time now = absl::Now();
    if (now >= ended_at + kAfterEnd) return kExitOk;
    if (now > deadline) {
      std::cerr << "teclctl: logs: gave up following " << id << " after "
                << absl::FormatDuration(timeout) << "\n";
      return kExitFailure;
    }
    if (ended_at == absl::InfiniteFuture()) {
      absl::StatusOr<tecl::v1::Job> job = client()->GetJob(id);
      if (job.ok() && coordinator::IsTerminal(job->state())) ended_at = now;
    }
    absl::SleepFor(kPoll);
  }
}

int Cli::Workers() {
  if (client() == nullptr) return Fail(client_error_, "workers");
  absl::StatusOr<std::vector<tecl::v1::WorkerInfo>> workers =
      client()->ListWorkers(tecl::v1::WORKER_KIND_UNSPECIFIED);
  if (!workers.ok()) return Fail(workers.status(), "workers");
  tecl::v1::ListWorkersResponse response;
  for (auto& worker : *workers) *response.add_workers() = std::move(worker);
  if (json_) {
    std::cout << ToJson(response);
    return kExitOk;
  }
  if (response.workers().empty()) {
    std::cout << "no workers registered\n";
    return kExitOk;
  }
  const int64_t now = absl::ToUnixMillis(absl::Now());
  std::vector<std::vector<std::string>> rows = {
      {"ID", "KIND", "STATE", "HOST", "DEVICE", "JOB", "RANK", "HEARTBEAT", "ADDRESS"}};
  for (const auto& w : response.workers()) {
    const auto* kind = tecl::v1::WorkerKind_descriptor()->FindValueByNumber(w.kind());
    const auto* state = tecl::v1::WorkerState_descriptor()->FindValueByNumber(w.state());
    const auto* device = tecl::v1::Device_descriptor()->FindValueByNumber(w.device());
    std::string device_text =
        device && w.device() != 0 ? coordinator::EnumValueShortName(*device) : "-";
    if (w.gpus() > 0) absl::StrAppend(&device_text, " x", w.gpus());
    const bool busy = w.state() == tecl::v1::WORKER_STATE_BUSY;
    rows.push_back({w.id(), kind ? coordinator::EnumValueShortName(*kind) : "?",
                    state ? coordinator::EnumValueShortName(*state) : "?",
                    w.hostname().empty() ? "-" : w.hostname(),
                    w.kind() == tecl::v1::WORKER_KIND_TRAINER ? device_text : "-",
                    busy ? absl::StrCat(w.job_id(), "/", w.attempt()) : "-",
                    busy ? absl::StrCat(w.rank()) : "-", Age(w.last_heartbeat_unix_ms(), now),
                    w.address().empty() ? "-" : w.address()});
  }
  std::cout << Table(rows);
  return kExitOk;
}

int Cli::Local(const std::vector<std::string>& args) {
  if (args.size() != 3) return Usage("local takes up, down or status");
  const std::string home = LocalHome(absl::GetFlag(FLAGS_home));
  absl::Status status;
  if (args[2] == "up") {
    LocalClusterOptions options;
    options.home = home;
    options.trainers = absl::GetFlag(FLAGS_trainers);
    options.dataloaders = absl::GetFlag(FLAGS_dataloaders);
    options.threads = absl::GetFlag(FLAGS_threads);
    options.checkpoint_roots =
        absl::StrSplit(absl::GetFlag(FLAGS_checkpoint_roots), ',', absl::SkipEmpty());
    for (std::string& root : options.checkpoint_roots) {
      root = std::filesystem::absolute(root).lexically_normal().string();
    }
    options.write_roots =
        absl::StrSplit(absl::GetFlag(FLAGS_write_roots), ',', absl::SkipEmpty());
    for (std::string& root : options.write_roots) {
      root = std::filesystem::absolute(root).lexically_normal().string();
    }
    if (absl::GetFlag(FLAGS_timeout) > absl::ZeroDuration())
      options.timeout = absl::GetFlag(FLAGS_timeout);
    status = LocalUp(options, std::cout);
  } else if (args[2] == "down") {
    status = LocalDown(home, std::cout);
  } else if (args[2] == "status") {
    status = LocalStatus(home, std::cout);
  } else {
    return Usage(absl::StrCat("local takes up, down or status, not \"", args[2], "\""));
  }
  if (status.ok()) return kExitOk;
  std::cerr << "teclctl local " << args[2] << ": " << status.message() << "\n";
  if (status.code() == absl::StatusCode::kNotFound && args[2] == "status") return kExitNotFound;
  return status.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
}

}  // namespace

int Run(int argc, char** argv) {
  // Pre-scan: --set (repeatable, values may hold commas), -f, and per-command help, which absl
  // flags do not handle the way teclctl needs.
  std::vector<std::string> raw(argv, argv + argc);
  std::vector<std::string> kept = {raw[0]};
  std::vector<std::string> overrides;
  bool help = false;
  for (size_t i = 1; i < raw.size(); ++i) {
    const std::string& arg = raw[i];
    if (arg == "--set" || arg == "-set") {
      if (i + 1 == raw.size()) {
        std::cerr << "teclctl: --set needs path.to.field=value\n";
        return kExitUsage;
      }
      overrides.push_back(raw[++i]);
    } else if (absl::StartsWith(arg, "--set=")) {
      overrides.push_back(arg.substr(6));
    } else if (arg == "-f") {
      kept.push_back("--follow");
    } else if (arg == "--help" || arg == "-h" || arg == "-help" || arg == "help") {
      help = true;
    } else {
      kept.push_back(arg);
    }
  }
  std::vector<char*> kept_argv;
  for (std::string& arg : kept) kept_argv.push_back(arg.data());
  std::vector<char*> positional =
      ParseFlags(static_cast<int>(kept_argv.size()), kept_argv.data(), kOverview);
  std::vector<std::string> args(positional.begin(), positional.end());
  if (args.size() < 2) {
    (help ? std::cout : std::cerr) << kOverview;
    return help ? kExitOk : kExitUsage;
  }
  if (help) {
    auto it = CommandHelp().find(args[1]);
    if (it == CommandHelp().end()) {
      std::cerr << "teclctl: unknown command \"" << args[1] << "\"\n" << kOverview;
      return kExitUsage;
    }
    std::cout << it->second;
    return kExitOk;
  }
  const std::string output = absl::GetFlag(FLAGS_output);
  if (output != "text" && output != "json") {
    std::cerr << "teclctl: --output must be text or json, not \"" << output << "\"\n";
    return kExitUsage;
  }
  absl::StatusOr<ChannelOptions> channel = ChannelOptionsFromFlags();
  if (!channel.ok()) {
    std::cerr << "teclctl: " << channel.status().message() << "\n";
    return kExitUsage;
  }
  // The coordinator: --coordinator or $TECL_COORDINATOR, else a local cluster's (with its user
  // credentials, unless a token or certificate is given), else the default.
  std::string address = absl::GetFlag(FLAGS_coordinator);
  const char* env = std::getenv("TECL_COORDINATOR");
  const std::string home = LocalHome(absl::GetFlag(FLAGS_home));
  if (!ArgGiven(raw, "coordinator") && (env == nullptr || *env == '\0')) {
    absl::StatusOr<std::string> local = LocalCoordinatorAddress(home);
    if (local.ok()) address = *local;
  }
  if (channel->token.empty() && channel->tls_ca_file.empty()) {
    const LocalSecrets secrets = LocalSecretsIn(home);
    if (std::filesystem::exists(secrets.auth_file)) {
      *channel = LocalChannelOptions(secrets, "user");
    }
  }
  Cli cli(address, *channel);
  return cli.Dispatch(args, overrides);
}

}  // namespace tecl::teclctl
