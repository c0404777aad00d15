// u2pl_replay: replays a recorded trace of warm-start training iterations (the public U2PL code's,
// from tools/pytorch/official_trace.py) through the engine from the same initial weights, batches
// and dropout scales, and reports the loss and learning rates per iteration and the parameters'
// deviation after the trace's snapshots. The logic lives in u2pl/train/replay.h; this main parses
// and prints.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "engine/file_io.h"
#include "engine/log.h"
#include "u2pl/train/replay.h"

using namespace u2pl;

namespace {

const char* const kUsage =
    "usage: u2pl_replay --config FILE --trace TRACE.safetensors [--out REPORT.md] [section.key=value ...]\n"
    "  --config  the config.yaml the trace was recorded with (a public-style file)\n"
    "  --trace   a trace of tools/pytorch/official_trace.py\n"
    "  --out     also write the report (Markdown) to this file\n"
    "  key=value override a config value; trainer.preset=official replays the public code's rules\n"
    "Runs on the CPU. Prints each iteration's supervised loss (trace, engine) as it goes, then the\n"
    "report: the losses, the learning rate of each parameter group, and after each snapshot of the\n"
    "trace the parameters' and BN statistics' deviation and the tensors that differ most.\n";

struct Args {
  std::string config, trace, out;
  std::vector<std::string> overrides;
};

Args parse(int argc, char** argv) {
  Args a;
  for (ArgReader r(argc, argv, kUsage); r.next();) {
    const std::string& k = r.key();
    if (k == "--config") a.config = r.value();
    else if (k == "--trace") a.trace = r.value();
    else if (k == "--out") a.out = r.value();
    else if (k == "--help" || k == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else if (r.is_override()) a.overrides.push_back(k);
    else U2PL_FAIL("unknown argument '" << k << "'\n" << kUsage);
  }
  U2PL_CHECK(!a.config.empty() && !a.trace.empty(), "--config and --trace are required\n" << kUsage);
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with its error, named
  try {
    const Args a = parse(argc, argv);
    std::vector<std::string> log;
    const TrainConfig cfg = load_train_config(a.config, a.overrides, &log);
    for (const std::string& l : log) U2PL_LOG(l);
    const ReplayReport r = replay_trace(cfg, a.trace, [](const ReplayStep& s) {
      std::fprintf(stderr, "iteration %lld: loss trace %.6f, engine %.6f\n", static_cast<long long>(s.it), s.want_loss,
                   s.loss);
    });
    const std::string text = format_replay(r);
    std::cout << text;
    if (!a.out.empty()) {
      write_file_atomic(a.out, text);
      std::cout << "report written to " << a.out << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "u2pl_replay: error: " << e.what() << std::endl;
    return 1;
  }
}
