// u2pl_infer: colourised predictions of a trained network for PNG and JPEG images, and with --dump the
// raw stride-4 logits (and representation) as .npy for parity checks against PyTorch.
// The logic lives in u2pl/eval/predict.h; this main parses, builds, loops.
#include <csignal>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "apps/cli.h"
#include "engine/device_memory.h"
#include "engine/log.h"
#include "u2pl/eval/predict.h"
#include "u2pl/net/net_config.h"
#include "u2pl/net/weights.h"

namespace fs = std::filesystem;
using namespace u2pl;

namespace {

const char* const kUsage =
    "usage: u2pl_infer --config CFG --weights W [--device cpu|cuda] [--out DIR] [--dump DIR]\n"
    "                  [--alpha A] IMAGE...\n"
    "  --config   a U2PL config.yaml (its net section and dataset.mean/std are used)\n"
    "  --weights  engine weights (.safetensors, see weights/README.md)\n"
    "  --device   cuda when a GPU is present, else cpu\n"
    "  --out      folder for <image stem>.png colourised predictions (default: predictions)\n"
    "  --dump     also write <stem>.pred.npy (1,C,h,w stride-4 logits) and <stem>.rep.npy\n"
    "  --alpha    also write <stem>.entropy.png and <stem>.partition.png: the entropy map and the\n"
    "             reliable (class colour) / unreliable (white) split at the top A% entropy\n";

struct Args {
  std::string config, weights, out = "predictions", dump;
  double alpha = 0;  // 0: no entropy pictures
  std::optional<Device> device;  // default_device() when not given
  std::vector<std::string> images;
};

Args parse(int argc, char** argv) {
  Args a;
  for (ArgReader r(argc, argv, kUsage); r.next();) {
    const std::string& k = r.key();
    if (k == "--config") a.config = r.value();
    else if (k == "--weights") a.weights = r.value();
    else if (k == "--device") a.device = parse_device(r.value());
    else if (k == "--out") a.out = r.value();
    else if (k == "--dump") a.dump = r.value();
    else if (k == "--alpha") {
      const std::string v = r.value();
      try {
        a.alpha = std::stod(v);
      } catch (const std::exception&) {
        U2PL_FAIL("--alpha: expected a percentage, got '" << v << "'");
      }
      U2PL_CHECK(a.alpha > 0 && a.alpha < 100, "--alpha: expected a percentage in (0, 100), got " << v);
    }
    else if (k == "-h" || k == "--help") { std::cout << kUsage; std::exit(0); }
    else if (k.rfind("--", 0) == 0) U2PL_FAIL("unknown option " << k << "\n" << kUsage);
    else a.images.push_back(k);
  }
  U2PL_CHECK(!a.config.empty() && !a.weights.empty() && !a.images.empty(),
             "--config, --weights and at least one image are required\n" << kUsage);
  if (!a.device) a.device = default_device();
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with its error, named
  try {
    const Args a = parse(argc, argv);
    std::vector<std::string> warnings;
    NetConfig cfg = load_net_config(a.config, &warnings);
    for (const auto& w : warnings) U2PL_LOG("warning: " << w);
    for (const auto& img : a.images) U2PL_CHECK(fs::is_regular_file(img), img << ": no such image file");
    U2plNet net(cfg);
    net.allocate(*a.device, 0, /*trainable=*/false);
    const WeightReport r = load_weights(net.params(), a.weights);
    U2PL_LOG("weights: " << r.loaded << " tensors from " << r.source);
    if (r.scope == WeightScope::Backbone)
      U2PL_LOG("warning: " << a.weights << " holds only the backbone; the decoder is untrained");
    fs::create_directories(a.out);
    if (!a.dump.empty()) fs::create_directories(a.dump);
    Context ctx(*a.device);
    for (size_t i = 0; i < a.images.size(); ++i) {
      const std::string stem = fs::path(a.images[i]).stem().string();
      const Image rgb = read_image(a.images[i], 3);
      const Tensor input = image_tensor(rgb, cfg, *a.device);
      const Prediction p = predict_whole(ctx, net, input);
      const std::string png = (fs::path(a.out) / (stem + ".png")).string();
      write_png(png, colourise(p.index, p.width, p.height, cfg.num_classes));
      if (!a.dump.empty()) {
        write_npy((fs::path(a.dump) / (stem + ".pred.npy")).string(), p.raw.pred);
        if (p.raw.rep.defined()) write_npy((fs::path(a.dump) / (stem + ".rep.npy")).string(), p.raw.rep);
      }
      std::cout << "[" << i + 1 << "/" << a.images.size() << "] " << a.images[i] << " -> " << png;
      if (a.alpha > 0) {
        double gamma = 0;
        write_png((fs::path(a.out) / (stem + ".entropy.png")).string(), entropy_image(p, cfg.num_classes));
        write_png((fs::path(a.out) / (stem + ".partition.png")).string(),
                  partition_image(p, cfg.num_classes, a.alpha, &gamma));
        std::cout << " (entropy threshold at " << a.alpha << "%: " << gamma << ")";
      }
      std::cout << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "u2pl_infer: " << e.what() << "\n";
    return 1;
  }
}
