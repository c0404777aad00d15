// u2pl_bench: engine benchmarks. `u2pl_bench layers` times every distinct conv, BN, bilinear and
// max-pool shape of ResNet-101 DeepLabv3+ forward and backward (bench/layer_bench.h);
// tools/bench_layers.sh runs it beside PyTorch (bench/layers_torch.py) and compares the two.
// `u2pl_bench model` times the whole network (bench/model_bench.h; tools/bench_model.sh);
// `u2pl_bench step` a whole U2PL training iteration (bench/step_bench.h; tools/bench_step.sh).
// `u2pl_bench env` prints the CUDA environment (devices, driver, runtime, cuDNN, cuBLAS, NCCL).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <iomanip>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "bench/layer_bench.h"
#include "bench/model_bench.h"
#include "bench/step_bench.h"
#include "engine/comm.h"
#include "engine/file_io.h"
#include "engine/device_memory.h"
#include "engine/nccl.h"

namespace {

const char* const kUsage =
    "usage: u2pl_bench layers [--device cpu|cuda] [--crop N] [--batch B] [--threads T]\n"
    "                         [--repeat R] [--filter SUBSTR] [--json FILE]\n"
    "  --device   default cuda when a GPU is present, else cpu\n"
    "  --crop     input side (129 default, 513 as in training)\n"
    "  --batch    images per batch (default 2, at least 2)\n"
    "  --threads  OpenBLAS and OpenMP threads (default: number of cores)\n"
    "  --repeat   timed runs per row after one warm-up, median reported (default 3, at least 3)\n"
    "  --filter   only rows whose name contains SUBSTR or whose kind is SUBSTR\n"
    "  --json     also write the rows as a JSON list to FILE\n"
    "usage: u2pl_bench model [--device cpu|cuda] [--mode eval|train|u2pl] [--depth D] [--os 8|16]\n"
    "                        [--width-divisor K] [--batch B] [--crop N] [--threads T] [--repeat R]\n"
    "                        [--json FILE] [--plan-only [--device-memory GIB]]\n"
    "  --mode     eval: forward on B images; train: forward + backward on B; u2pl: teacher eval\n"
    "             forward on B, student forward + backward on 2B, teacher train-statistics on 2B\n"
    "  --plan-only  print the memory a U2PL step's arenas and plans need (B + B images), no run;\n"
    "             `modes`: the total in each memory mode (trainer.memory)\n"
    "  --device-memory  with --plan-only: the mode trainer.memory auto picks on a device of GIB\n"
    "             GiB free (the fastest whose total leaves a tenth free), as `auto`\n"
    "usage: u2pl_bench step [--device cpu|cuda] [--preset paper|official] [--depth D] [--os 8|16]\n"
    "                       [--width-divisor K] [--batch B] [--crop N] [--classes C] [--threads T]\n"
    "                       [--repeat R] [--replicas N] [--memory MODE] [--json FILE] [--profile]\n"
    "  step       whole u2pl::TrainStep iterations past the warm start (the VOC recipe under the\n"
    "             preset, default paper): B labeled + B unlabeled random images, C classes (21)\n"
    "  --replicas trainer.replicas: N replicas of B + B images each (default 1), in one process or,\n"
    "             under mpirun -np W, N/W in each of W processes (the time and the bytes each\n"
    "             process sends per iteration are rank 0's)\n"
    "  --memory   trainer.memory: auto (default), keep, recompute_bn or recompute_blocks\n"
    "  --profile  time each phase of the timed iterations (teacher forwards, pseudo-labels, student\n"
    "             forward, each loss, backward, SGD, EMA) and the convolutions and memory-bank\n"
    "             pushes inside them, on the device's clock (CUDA events), with convolution TFLOP/s\n"
    "usage: u2pl_bench env\n"
    "  env        the CUDA environment: devices, the driver's and the runtime's CUDA versions,\n"
    "             cuDNN and cuBLAS with the files they were loaded from, NCCL (several processes\n"
    "             on CUDA) found or where it was looked for; exit 1 on a CUDA error\n";

struct Options {
  std::optional<u2pl::Device> device;  // default_device() when not given
  int crop = 129, batch = 2, repeat = 3;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string filter, json;
};

int parse_int(const std::string& flag, const std::string& v, int min) {
  size_t used = 0;
  int x = 0;
  try {
    x = std::stoi(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  U2PL_CHECK(used == v.size() && !v.empty(), flag << ": expected an integer, got '" << v << "'");
  U2PL_CHECK(x >= min, flag << ": expected at least " << min << ", got " << x);
  return x;
}

Options parse_layers_args(int argc, char** argv) {
  Options o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    U2PL_CHECK(i + 1 < argc, a << ": missing value\n" << kUsage);
    const std::string v = argv[++i];
    if (a == "--device") o.device = u2pl::parse_device(v);
    else if (a == "--crop") o.crop = parse_int(a, v, 1);
    else if (a == "--batch") o.batch = parse_int(a, v, 2);
    else if (a == "--threads") o.threads = parse_int(a, v, 1);
    else if (a == "--repeat") o.repeat = parse_int(a, v, 3);
    else if (a == "--filter") o.filter = v;
    else if (a == "--json") o.json = v;
    else U2PL_FAIL("unknown option '" << a << "'\n" << kUsage);
  }
  if (!o.device) o.device = u2pl::default_device();
  return o;
}

// OpenBLAS (the pthread build) restarts its workers in openblas_set_num_threads, and they spin
// for a while, taking a core from the OpenMP workers: the first rows then ran 20-50x slow. So the
// count is only changed when it differs, and the workers get time to park before any timing.
void set_threads(int threads) {
  if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

int run_layers(const Options& o) {
  using namespace u2pl::bench;
  set_threads(o.threads);
  std::vector<BenchOp> ops;
  for (const BenchOp& op : network_layer_ops(o.crop, o.batch))
    if (o.filter.empty() || op.name.find(o.filter) != std::string::npos ||
        o.filter == op_kind_name(op.kind))
      ops.push_back(op);
  U2PL_CHECK(!ops.empty(), "--filter '" << o.filter << "' matches no row");

  u2pl::Context ctx(*o.device);
  std::cerr << "u2pl_bench layers: device " << u2pl::device_name(*o.device) << ", crop " << o.crop
            << ", batch " << o.batch << ", threads " << o.threads << ", repeat " << o.repeat
            << ", " << ops.size() << " rows\n";
  std::vector<BenchRow> rows;
  for (size_t i = 0; i < ops.size(); ++i) {
    rows.push_back({ops[i], time_op(ctx, ops[i], o.repeat)});
    std::cerr << "[" << i + 1 << "/" << ops.size() << "] " << ops[i].name << " "
              << shape_text(ops[i]) << std::fixed << std::setprecision(3) << ": fwd "
              << rows.back().t.fwd_ms << " ms, bwd " << rows.back().t.bwd_ms << " ms\n"
              << std::defaultfloat;
  }
  print_table(std::cout, rows);
  if (!o.json.empty()) u2pl::write_file_atomic(o.json, rows_json(rows).dump(1) + "\n");
  return 0;
}

// Prints a model or step result and writes it to `json` when given.
int print_result(const nlohmann::json& r, const std::string& json) {
  std::cout << r.dump(1) << "\n";
  if (!json.empty()) u2pl::write_file_atomic(json, r.dump(1) + "\n");
  return 0;
}

int run_model(int argc, char** argv) {
  u2pl::bench::ModelBenchOptions o;
  std::optional<u2pl::Device> device;
  int threads = Options().threads;
  std::string json;
  bool plan_only = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--plan-only") {
      plan_only = true;
      continue;
    }
    U2PL_CHECK(i + 1 < argc, a << ": missing value\n" << kUsage);
    const std::string v = argv[++i];
    if (a == "--device") device = u2pl::parse_device(v);
    else if (a == "--mode") o.mode = v;
    else if (a == "--depth") o.depth = parse_int(a, v, 18);
    else if (a == "--os") o.output_stride = parse_int(a, v, 8);
    else if (a == "--width-divisor") o.width_divisor = parse_int(a, v, 1);
    else if (a == "--batch") o.batch = parse_int(a, v, 1);  // train at batch 1: BN refuses, as PyTorch
    else if (a == "--crop") o.crop = parse_int(a, v, 33);
    else if (a == "--threads") threads = parse_int(a, v, 1);
    else if (a == "--repeat") o.repeat = parse_int(a, v, 3);
    else if (a == "--device-memory") o.device_memory_gib = parse_int(a, v, 1);
    else if (a == "--json") json = v;
    else U2PL_FAIL("unknown option '" << a << "'\n" << kUsage);
  }
  U2PL_CHECK(plan_only || o.device_memory_gib == 0, "--device-memory goes with --plan-only\n" << kUsage);
  o.device = device ? *device : plan_only ? u2pl::Device::CPU : u2pl::default_device();
  const nlohmann::json r = plan_only ? u2pl::bench::plan_memory(o) : (set_threads(threads), u2pl::bench::run_model_bench(o));
  return print_result(r, json);
}

int run_step(int argc, char** argv) {
  u2pl::bench::StepBenchOptions o;
  std::optional<u2pl::Device> device;
  int threads = Options().threads;
  std::string json;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--profile") {
      o.profile = true;
      continue;
    }
    U2PL_CHECK(i + 1 < argc, a << ": missing value\n" << kUsage);
    const std::string v = argv[++i];
    if (a == "--device") device = u2pl::parse_device(v);
    else if (a == "--preset") o.preset = v;
    else if (a == "--depth") o.depth = parse_int(a, v, 18);
    else if (a == "--os") o.output_stride = parse_int(a, v, 8);
    else if (a == "--width-divisor") o.width_divisor = parse_int(a, v, 1);
    else if (a == "--batch") o.batch = parse_int(a, v, 1);
    else if (a == "--crop") o.crop = parse_int(a, v, 33);
    else if (a == "--classes") o.classes = parse_int(a, v, 2);
    else if (a == "--threads") threads = parse_int(a, v, 1);
    else if (a == "--repeat") o.repeat = parse_int(a, v, 3);
    else if (a == "--replicas") o.replicas = parse_int(a, v, 1);
    else if (a == "--memory") o.memory = v;
    else if (a == "--json") json = v;
    else U2PL_FAIL("unknown option '" << a << "'\n" << kUsage);
  }
  o.device = device ? *device : u2pl::default_device();
  set_threads(threads);
  const nlohmann::json r = u2pl::bench::run_step_bench(o);
  const int code = u2pl::world().root() ? print_result(r, json) : 0;  // under mpirun rank 0 reports
  u2pl::finalize_world();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with its error, named
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    for (int i = 1; i < argc; ++i)
      if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") {
        std::cout << kUsage;
        return 0;
      }
    if (cmd == "model") return run_model(argc, argv);
    if (cmd == "step") return run_step(argc, argv);
    if (cmd == "env") {
      U2PL_CHECK(argc == 2, "env takes no options\n" << kUsage);
      std::cout << u2pl::cuda_environment();
      const u2pl::NcclLibrary& nccl = u2pl::nccl_library();  // several processes on CUDA need it
      std::cout << "nccl: " << (nccl.found ? std::to_string(nccl.version) + " from " + nccl.path : nccl.error) << "\n";
      return 0;
    }
    U2PL_CHECK(cmd == "layers", "expected the subcommand 'layers', 'model', 'step' or 'env'\n" << kUsage);
    return run_layers(parse_layers_args(argc, argv));
  } catch (const std::exception& e) {
    u2pl::Comm* w = u2pl::started_world();
    std::cerr << "u2pl_bench: " << (w ? u2pl::rank_prefix(*w) : "") << e.what() << std::endl;
    if (w && w->size() > 1) w->abort(1);  // the other processes may wait in a collective
    return 1;
  }
}
