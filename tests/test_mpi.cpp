// The `mpi` suite, run by CTest under `mpirun -np 2` (one thread each): the communicator's
// collectives, sharded validation, and training over two processes of one replica each against
// one process of both replicas (SupOnly, CutMix, U2PL in both presets: warm start, handover,
// queues wrapping; on CUDA where the node has two GPUs), a run stopped on two processes resumed on
// one, and the errors every process
// must agree on. Rank 0 makes the data and compares; both train. Comparisons come after the last
// collective of a case, so a failed check cannot leave a process waiting; an exception or a failed
// REQUIRE on one process (which would leave the other in a collective) ends both at once
// (the listener below).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "data/synth.h"
#include "engine/comm.h"
#include "engine/device_memory.h"
#include "engine/safetensors.h"
#include "tests/bn_sync_util.h"
#include "tests/config_test_util.h"
#include "tests/trainer_test_util.h"
#include "u2pl/eval/eval_report.h"
#include "u2pl/eval/predict.h"
#include "u2pl/train/train_log.h"
#include "u2pl/train/trainer.h"

using namespace u2pl;
namespace fs = std::filesystem;

namespace {

// Under two processes, a test case that ends early on one process (an exception, a failed
// REQUIRE) would leave the other waiting in a collective: print it and end both.
struct EndBothOnEarlyExit : doctest::IReporter {
  explicit EndBothOnEarlyExit(const doctest::ContextOptions&) {}
  void end_both(const std::string& why) {
    if (!launched_by_mpi() || world().size() < 2) return;
    std::fprintf(stderr, "%s%s: ending both processes\n", rank_prefix(world()).c_str(), why.c_str());
    world().abort(1);
  }
  void test_case_exception(const doctest::TestCaseException& e) override {
    end_both("exception in the test case: " + std::string(e.error_string.c_str()));
  }
  void log_assert(const doctest::AssertData& a) override {
    if (a.m_failed && (a.m_at & doctest::assertType::is_require))
      end_both(std::string("a REQUIRE failed at ") + a.m_file + ":" + std::to_string(a.m_line));
  }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("end_both_on_early_exit", 1, EndBothOnEarlyExit);

// A folder every process sees: made by rank 0, its path broadcast; removed at scope exit.
struct SharedDir {
  std::string path;
  explicit SharedDir(const std::string& tag) {
    Comm& w = world();
    char buf[512] = {};
    if (w.root()) {
      path = (fs::temp_directory_path() / ("u2pl_mpi_" + tag + "_" + std::to_string(getpid()))).string();
      fs::remove_all(path);
      fs::create_directories(path);
      std::snprintf(buf, sizeof(buf), "%s", path.c_str());
    }
    w.broadcast(buf, sizeof(buf), 0);
    path = buf;
  }
  ~SharedDir() {
    world().barrier();
    if (world().root()) fs::remove_all(path);
  }
};

// The trainer tests' tiny set, written by rank 0 into `dir`.
void make_tiny_set(const std::string& dir) {
  if (world().root()) write_synth_dataset(u2pl::test::tiny_synth_spec(), dir);
  world().barrier();
}

TrainConfig tiny(const std::string& data, const std::string& method, const std::vector<std::string>& overrides) {
  const std::string path = data + "/" + method + ".yaml";
  if (world().root()) std::ofstream(path) << u2pl::test::tiny_train_config(data, 4, method);
  world().barrier();
  return load_train_config(path, overrides, nullptr);
}

TrainRunOptions quiet(const std::string& run_dir, Comm& comm, int64_t stop_after = -1, bool resume = false) {
  return u2pl::test::quiet(run_dir, stop_after, resume, &comm);
}
using u2pl::test::run;

// ‖a − b‖ ≤ 1e-5 · ‖b‖ over each tensor (or each `row`-float row of it, for the bank's queues): float
// sums in another order (the gradient all-reduce, a convolution over half the batch) move the
// last bits, and six SGD steps carry them on.
void expect_close(const std::vector<float>& a, const std::vector<float>& b, const std::string& what,
                  size_t row = 0, double tol = 1e-5) {
  CHECK_MESSAGE(a.size() == b.size(), what);
  if (a.size() != b.size()) return;
  if (row == 0) row = std::max<size_t>(a.size(), 1);
  double worst = 0;
  size_t worst_at = 0;
  for (size_t r0 = 0; r0 < a.size(); r0 += row) {
    double d2 = 0, b2 = 0;
    for (size_t i = r0; i < std::min(a.size(), r0 + row); ++i) {
      d2 += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
      b2 += double(b[i]) * double(b[i]);
    }
    const double rel = b2 > 0 ? std::sqrt(d2 / b2) : std::sqrt(d2);
    if (rel > worst) worst = rel, worst_at = r0 / row;
  }
  CHECK_MESSAGE(worst <= tol, what << ": relative difference " << worst << " (row " << worst_at << ")");
}

// `queues`: compare the bank's rows too (else their number only).
void expect_close_checkpoints(const std::string& a, const std::string& b, double tol = 1e-5, bool queues = true) {
  const SafeTensorsFile fa(a), fb(b);
  CHECK(fa.entries().size() == fb.entries().size());
  for (const auto& [name, e] : fa.entries()) {
    CHECK_MESSAGE(fb.has(name), name);
    if (!fb.has(name)) continue;
    const bool queue = name.rfind("bank.", 0) == 0;  // rows of the feature size
    if (queue && !queues)
      CHECK_MESSAGE(fa.floats(name).size() == fb.floats(name).size(), name);
    else
      expect_close(fa.floats(name), fb.floats(name), name, queue ? size_t(e.shape.back()) : 0, tol);
  }
  CHECK(fa.meta("iter") == fb.meta("iter"));
}

void expect_close_logs(const std::string& a, const std::string& b) {
  const LogRecords la = read_log(a), lb = read_log(b);
  CHECK(la.iters.size() == lb.iters.size());
  for (size_t i = 0; i < std::min(la.iters.size(), lb.iters.size()); ++i) {
    CHECK(la.iters[i].terms.size() == lb.iters[i].terms.size());
    for (size_t t = 0; t < std::min(la.iters[i].terms.size(), lb.iters[i].terms.size()); ++t) {
      const auto& [name, va] = la.iters[i].terms[t];
      const double vb = lb.iters[i].terms[t].second;
      CHECK_MESSAGE(std::fabs(va - vb) <= 1e-5 * std::max(std::fabs(va), 1e-3),
                    "iteration " << i << " " << name << ": " << va << " vs " << vb);
    }
    CHECK(la.iters[i].stats.size() == lb.iters[i].stats.size());
  }
  CHECK(la.vals.size() == lb.vals.size());
  for (size_t i = 0; i < std::min(la.vals.size(), lb.vals.size()); ++i) {
    INFO("validation " << i << " (" << la.vals[i].model << ")");
    // Weights equal to float rounding give the same predictions but where a pixel's two best
    // classes tie to that rounding: a few pixels of the 6400 at most.
    CHECK(std::fabs(la.vals[i].miou - lb.vals[i].miou) <= 2e-3);
  }
}

}  // namespace

TEST_SUITE("mpi") {
  TEST_CASE("mpi: the collectives of two processes") {
    Comm& w = world();
    REQUIRE(w.size() == 2);
    const int r = w.rank();
    std::vector<float> f = {1.5f + r, -2.f * r};
    w.allreduce_sum(f.data(), 2);
    CHECK(f == std::vector<float>{4.f, -2.f});
    std::vector<double> d = {0.25 * (r + 1)};
    w.allreduce_sum(d.data(), 1);
    CHECK(d[0] == 0.75);
    int64_t n = int64_t(1) << (40 + r);
    w.allreduce_sum(&n, 1);
    CHECK(n == (int64_t(3) << 40));
    CHECK(w.gather_all(int32_t(10 + r)) == std::vector<int32_t>{10, 11});
    // Contributions of different sizes (rank 0 none), concatenated in rank order.
    const std::string mine = r == 0 ? "" : "abc";
    const std::vector<char> all = w.allgatherv(mine.data(), mine.size());
    CHECK(std::string(all.begin(), all.end()) == "abc");
    char b[3] = {0, 0, 0};
    if (r == 1) b[0] = 'x', b[1] = 'y';
    w.broadcast(b, 2, 1);
    CHECK(std::string(b) == "xy");
    CHECK(w.bytes_sent() > 0);
    CHECK(w.local_size() == 2);
    CHECK(w.local_rank() == r);
    CHECK(rank_prefix(w) == "rank " + std::to_string(r) + " of 2: ");
  }

  TEST_CASE("mpi: SyncBN over two processes equals one process of both replicas") {
    // Two replicas of 3 images; process r holds replica r.
    const int r = world().rank();
    const ReplicaSync over_two{&world(), 1, r, 2}, in_one{nullptr, 2, 0, 2};
    const u2pl::test::BnRun two = u2pl::test::run_bn(&over_two, 3 * r, 3);
    const u2pl::test::BnRun one = u2pl::test::run_bn(&in_one);
    std::vector<float> dg = two.dg, db = two.db;  // the gradient all-reduce of a step
    world().allreduce_sum(dg.data(), int64_t(dg.size()));
    world().allreduce_sum(db.data(), int64_t(db.size()));
    const size_t n = two.y.size(), at = size_t(r) * n;
    CHECK(two.y == std::vector<float>(one.y.begin() + long(at), one.y.begin() + long(at + n)));
    CHECK(two.dx == std::vector<float>(one.dx.begin() + long(at), one.dx.begin() + long(at + n)));
    CHECK(two.rm == one.rm);
    CHECK(two.rv == one.rv);
    for (size_t c = 0; c < 3; ++c) {
      CHECK(dg[c] == doctest::Approx(one.dg[c]).epsilon(1e-6));
      CHECK(db[c] == doctest::Approx(one.db[c]).epsilon(1e-6));
    }
  }

  TEST_CASE("mpi: two processes of one replica each train as one process of two replicas") {
    SharedDir dir("replicas");
    make_tiny_set(dir.path);
    struct Case {
      std::string method;
      std::vector<std::string> overrides;
    };
    // 8 unlabeled images, 2 replicas of batch 2: 2 iterations an epoch, 3 epochs (the first
    // the warm start, the second the handover); queues of 40 and 60 rows wrap.
    const Case cases[] = {{"suponly", {}},
                          {"cutmix", {}},
                          {"u2pl", {"trainer.preset=paper"}},
                          {"u2pl", {"trainer.preset=official"}}};
    std::vector<std::pair<TrainResult, TrainResult>> results;  // (two processes, one), rank 0
    auto dir_of = [&](const char* tag, size_t k) { return dir.path + "/" + tag + std::to_string(k); };
    for (const Case& c : cases) {
      std::vector<std::string> ov = c.overrides;
      ov.push_back("trainer.replicas=2");
      const TrainConfig cfg = tiny(dir.path, c.method, ov);
      const TrainResult r2 = run(cfg, quiet(dir_of("two", results.size()), world()));
      TrainResult r1;
      if (world().root()) r1 = run(cfg, quiet(dir_of("one", results.size()), self_comm()));
      world().barrier();
      results.emplace_back(r2, r1);
    }
    for (size_t k = 0; k < results.size() && world().root(); ++k) {
      const Case& c = cases[k];
      const TrainResult &r2 = results[k].first, &r1 = results[k].second;
      const std::string two = dir_of("two", k), one = dir_of("one", k);
      INFO(c.method << (c.overrides.empty() ? "" : " " + c.overrides[0]));
      CHECK(r2.iterations == 6);
      CHECK(r1.iterations == 6);
      CHECK(std::fabs(r2.best_miou - r1.best_miou) <= 2e-3);
      expect_close_checkpoints(two + "/ckpt_latest.safetensors", one + "/ckpt_latest.safetensors");
      expect_close_logs(two + "/log.jsonl", one + "/log.jsonl");
      // Rank 0 alone wrote the run directory; the figures of both replicas are in its log.
      for (const char* f : {"config.yaml", "curves.svg", "ckpt_best.safetensors", "pictures"})
        CHECK_MESSAGE(fs::exists(two + "/" + f), f);
    }
  }

  // Where a machine has two GPUs (lent machines have one: then it says so and passes): SyncBN
  // statistics, the gradient buckets and the bank's rows through NCCL. CutMix compares closely; U2PL
  // loosely, as the one-process CUDA comparison with the CPU (tests/test_cuda_train.cpp): a float
  // difference at an entropy threshold moves a pixel between the contrastive candidates.
  TEST_CASE("mpi: two processes on two GPUs train as one GPU of two replicas") {
    const std::vector<int32_t> devices = world().gather_all(int32_t(cuda_built() ? cuda_device_count() : 0));
    if (*std::min_element(devices.begin(), devices.end()) < 2) {
      if (world().root()) MESSAGE("skipped: this needs two CUDA devices on the node, it has " << devices[0]);
      return;
    }
    SharedDir dir("gpus");
    make_tiny_set(dir.path);
    const std::pair<const char*, double> cases[] = {{"cutmix", 1e-4}, {"u2pl", 3e-2}};
    for (const auto& [method, tol] : cases) {
      const TrainConfig cfg = tiny(dir.path, method, {"trainer.replicas=2"});
      const std::string two = dir.path + "/two_" + method, one = dir.path + "/one_" + method;
      TrainRunOptions o2 = quiet(two, world()), o1 = quiet(one, self_comm());
      o2.device = o1.device = Device::CUDA;
      const TrainResult r2 = run(cfg, o2);
      TrainResult r1;
      if (world().root()) r1 = run(cfg, o1);
      world().barrier();
      if (!world().root()) continue;
      INFO(method);
      CHECK(r2.iterations == 6);
      CHECK(r1.iterations == 6);
      expect_close_checkpoints(two + "/ckpt_latest.safetensors", one + "/ckpt_latest.safetensors", tol,
                               std::string(method) == "cutmix");
    }
  }

  TEST_CASE("mpi: each process scores a shard of the val list; the sums equal one process's scores") {
    SharedDir dir("shards");
    make_tiny_set(dir.path);
    const TrainConfig cfg = tiny(dir.path, "suponly", {});
    U2plNet net(cfg.net);
    net.allocate(Device::CPU, 11, false);
    Context ctx(Device::CPU);
    const Dataset val(cfg.data.val_spec(), true);
    EvalConfig ec;
    ec.data = cfg.data;
    const EvalOptions eo = eval_options(ec);
    ConfusionMatrix part = evaluate_split(val, network_logits(ctx, net), cfg.net, eo, SaveOptions{}, nullptr,
                                          Shard{world().rank(), 2});
    const int64_t K = part.num_classes();
    const int64_t mine = part.total();
    world().allreduce_sum(part.counts(), K * K);
    const ConfusionMatrix whole = evaluate_split(val, network_logits(ctx, net), cfg.net, eo, SaveOptions{}, nullptr);
    CHECK(mine > 0);
    CHECK(mine < whole.total());
    for (int l = 0; l < K; ++l)
      for (int p = 0; p < K; ++p) CHECK(part.at(l, p) == whole.at(l, p));
  }

  TEST_CASE("mpi: a run stopped on two processes continues on one") {
    SharedDir dir("resume");
    make_tiny_set(dir.path);
    const TrainConfig cfg = tiny(dir.path, "u2pl", {"trainer.replicas=2"});
    const std::string split = dir.path + "/split", whole = dir.path + "/whole";
    const TrainResult a = run(cfg, quiet(split, world(), 3));  // mid-epoch, in the handover epoch
    CHECK(a.interrupted);
    CHECK(a.iterations == 3);
    if (world().root()) {
      const TrainResult b = run(cfg, quiet(split, self_comm(), -1, true));
      CHECK(b.iterations == 6);
      run(cfg, quiet(whole, self_comm()));
    }
    world().barrier();
    if (world().root()) {
      expect_close_checkpoints(split + "/ckpt_latest.safetensors", whole + "/ckpt_latest.safetensors");
      expect_close_logs(split + "/log.jsonl", whole + "/log.jsonl");
    }
  }

  TEST_CASE("mpi: errors every process meets before the first step") {
    SharedDir dir("errors");
    make_tiny_set(dir.path);
    // Three replicas do not split over two processes.
    const TrainConfig three = tiny(dir.path, "suponly", {"trainer.replicas=3", "dataset.batch_size=1"});
    const std::string e3 = u2pl::test::error_of([&] { run(three, quiet(dir.path + "/three", world())); });
    CHECK_MESSAGE(e3.find("trainer.replicas 3 does not split over 2 processes") != std::string::npos, e3);
    // Processes that resolved different configs (here: seeds) refuse to start.
    const TrainConfig seeded =
        tiny(dir.path, "suponly", {"trainer.replicas=2", "trainer.seed=" + std::to_string(7 + world().rank())});
    const std::string es = u2pl::test::error_of([&] { run(seeded, quiet(dir.path + "/seeds", world())); });
    CHECK_MESSAGE(es.find("process 1 resolved another config than process 0") != std::string::npos, es);
    // Missing weights and data are refused by every process, before any collective.
    const TrainConfig noweights =
        tiny(dir.path, "suponly", {"trainer.replicas=2", "net.encoder.kwargs.weights=/nonexistent/w.safetensors"});
    const std::string ew = u2pl::test::error_of([&] { run(noweights, quiet(dir.path + "/noweights", world())); });
    CHECK_MESSAGE(ew.find("/nonexistent/w.safetensors does not exist") != std::string::npos, ew);
    const TrainConfig nodata =
        tiny(dir.path, "suponly", {"trainer.replicas=2", "dataset.train.data_list=/nonexistent/l.txt"});
    const std::string ed = u2pl::test::error_of([&] { run(nodata, quiet(dir.path + "/nodata", world())); });
    CHECK_MESSAGE(ed.find("/nonexistent/l.txt") != std::string::npos, ed);
  }
}
