// u2pl_train: trains U2PL (or a baseline) from a public-style config.yaml, with command-line
// overrides, into a run directory; resumes bit for bit with --resume. The loop lives in
// u2pl/train/trainer.h, the config reader in u2pl/train/train_config.h; this main parses and
// reports.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "engine/comm.h"
#include "engine/device_memory.h"
#include "engine/log.h"
#include "u2pl/train/trainer.h"

using namespace u2pl;

namespace {

const char* const kUsage =
    "usage: u2pl_train --config FILE [--device cpu|cuda] [--run-dir DIR] [--resume] [--print-config]\n"
    "                  [section.key=value ...]\n"
    "  --config        a U2PL config.yaml (the public files run as they are)\n"
    "  --device        default: trainer.device, else cuda when a GPU is present, else cpu\n"
    "  --run-dir       default: saver.run_dir, else saver.snapshot_dir (checkpoints)\n"
    "  --resume        continue the run in the run directory from ckpt_latest.safetensors\n"
    "                  (also when saver.auto_resume is True and a checkpoint exists)\n"
    "  --print-config  print the resolved config and exit\n"
    "  key=value       override any config value, e.g. trainer.epochs=10 dataset.batch_size=4\n"
    "Run directory: config.yaml (resolved), log.jsonl, curves.svg, ckpt_latest.safetensors,\n"
    "ckpt_best.safetensors, pictures/. Ctrl-C stops after the current iteration and saves.\n"
    "Several processes: mpirun -np W u2pl_train ... runs trainer.replicas / W replicas in each (R = W\n"
    "unless the config sets trainer.replicas); kill -USR1 <mpirun pid> stops them all and saves.\n";

struct Args {
  std::string config, run_dir, device;
  bool resume = false, print_config = false;
  std::vector<std::string> overrides;
};

Args parse(int argc, char** argv) {
  Args a;
  for (ArgReader r(argc, argv, kUsage); r.next();) {
    const std::string& k = r.key();
    if (k == "--config") a.config = r.value();
    else if (k == "--device") a.device = r.value();
    else if (k == "--run-dir") a.run_dir = r.value();
    else if (k == "--resume") a.resume = true;
    else if (k == "--print-config") a.print_config = true;
    else if (k == "--help" || k == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (r.is_override()) a.overrides.push_back(k);
    else U2PL_FAIL("unknown argument '" << k << "'\n" << kUsage);
  }
  U2PL_CHECK(!a.config.empty(), "--config is required\n" << kUsage);
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with its error, named
  Comm* comm = nullptr;
  try {
    comm = &world();  // the processes of an mpirun / srun launch, else this one
    Args a = parse(argc, argv);
    std::vector<std::string> log;
    TrainConfig cfg = load_train_config(a.config, a.overrides, &log);
    if (!cfg.replicas_given && comm->size() > 1) {  // one replica per process unless the config says
      a.overrides.push_back("trainer.replicas=" + std::to_string(comm->size()));
      log.clear();
      cfg = load_train_config(a.config, a.overrides, &log);
      log.push_back("trainer.replicas not set: " + std::to_string(comm->size()) + ", one per process");
    }
    if (a.print_config) {
      for (const std::string& l : log) std::cerr << l << "\n";
      std::cout << resolved_yaml(cfg);
      return 0;
    }
    TrainRunOptions opt;
    std::string dev = a.device.empty() ? cfg.device : a.device;
    if (dev == "auto") dev = device_name(default_device());
    opt.device = parse_device(dev);
    opt.run_dir = !a.run_dir.empty() ? a.run_dir : !cfg.run_dir.empty() ? cfg.run_dir : cfg.snapshot_dir;
    opt.resume = a.resume || (cfg.auto_resume && access((opt.run_dir + "/ckpt_latest.safetensors").c_str(), F_OK) == 0);
    opt.terminal = isatty(fileno(stderr)) != 0;
    opt.config_log = log;
    opt.comm = comm;
    if (comm->root())  // rank 0 alone reports
      std::cout << "# resolved config (saved as " << opt.run_dir << "/config.yaml)\n"
                << resolved_yaml(cfg) << std::flush;
    const TrainResult r = train(cfg, opt);
    const int code = r.interrupted ? 130 : 0;
    if (!comm->root()) {
      finalize_world();
      return code;
    }
    std::cout << (r.interrupted ? "stopped" : "done") << ": " << r.iterations << "/" << r.total << " iterations";
    if (r.best_miou >= 0)
      std::cout << ", best val mIoU " << 100 * r.best_miou << " at iteration " << r.best_iter << ", last "
                << 100 * r.last_miou << " (" << r.eval_model << ")";
    std::cout << "; run directory " << opt.run_dir << "\n";
    finalize_world();
    return code;
  } catch (const std::exception& e) {
    std::cerr << "u2pl_train: " << (comm ? rank_prefix(*comm) : "") << "error: " << e.what() << std::endl;
    // One process's error ends them all: none is left waiting for it in a collective.
    if (comm && comm->size() > 1) comm->abort(1);
    return 1;
  }
}
