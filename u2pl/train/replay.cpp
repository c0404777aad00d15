// Replay of a recorded warm-start trace through TrainStep (u2pl/train/replay.h).
#include "u2pl/train/replay.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <set>
#include <sstream>

#include "engine/safetensors.h"
#include "u2pl/net/weights.h"

namespace u2pl {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string t; std::getline(in, t, sep);)
    if (!t.empty()) out.push_back(t);
  return out;
}

// A count in `text` (metadata `key`, or one of its items), refused whole unless it is one.
int64_t parse_count(const SafeTensorsFile& f, const std::string& key, const std::string& text) {
  size_t used = 0;
  int64_t n = -1;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  U2PL_CHECK(used == text.size() && used > 0 && n >= 0,
             f.path() << ": metadata " << key << ": '" << text << "' is not a count");
  return n;
}

int64_t meta_int(const SafeTensorsFile& f, const std::string& key) { return parse_count(f, key, f.meta(key)); }

// A recorded tensor of `n` values: its name and what it holds when it holds another number.
std::vector<double> recorded(const SafeTensorsFile& f, const std::string& name, size_t n) {
  const std::vector<double> v = f.doubles(name);
  U2PL_CHECK(v.size() == n, f.path() << ": " << name << " holds " << v.size() << " values, expected " << n);
  return v;
}

// The engine's state against the trace's after.N.*, and how far the trace moved from init.
ReplaySnapshot compare_state(const SafeTensorsFile& f, int64_t n, const ParamSet& ps,
                             const std::vector<std::vector<float>>& init) {
  ReplaySnapshot s;
  s.after = n;
  double diff2[2] = {0, 0}, moved2[2] = {0, 0};
  for (size_t i = 0; i < ps.decls().size(); ++i) {
    const ParamDecl& d = ps.decls()[i];
    const std::string key = "after." + std::to_string(n) + "." + d.name;
    U2PL_CHECK(f.has(key), f.path() << ": snapshot " << n << " lacks " << key);
    const std::vector<float> want = f.floats(key), got = to_host(ps.value(static_cast<int>(i)));
    U2PL_CHECK(want.size() == got.size(), f.path() << ": " << key << " holds " << want.size() << " values, the model "
                                                   << got.size());
    double e2 = 0, m2 = 0;
    for (size_t j = 0; j < want.size(); ++j) {
      const double e = double(got[j]) - double(want[j]), m = double(want[j]) - double(init[i][j]);
      e2 += e * e;
      m2 += m * m;
    }
    const int k = d.trainable ? 0 : 1;
    diff2[k] += e2;
    moved2[k] += m2;
    s.worst.push_back(TensorGap{d.name, std::sqrt(e2), std::sqrt(m2)});
  }
  s.params_rel = moved2[0] > 0 ? std::sqrt(diff2[0] / moved2[0]) : std::sqrt(diff2[0]);
  s.buffers_rel = moved2[1] > 0 ? std::sqrt(diff2[1] / moved2[1]) : std::sqrt(diff2[1]);
  std::stable_sort(s.worst.begin(), s.worst.end(), [](const TensorGap& a, const TensorGap& b) { return a.rel() > b.rel(); });
  if (s.worst.size() > 8) s.worst.resize(8);
  return s;
}

}  // namespace

std::optional<std::vector<Box>> TraceDraws::cutmix(int, int, int, int) {
  U2PL_FAIL("replay: a trace holds warm-start iterations only (no CutMix)");
}

IndexSource& TraceDraws::contrastive(int) {
  U2PL_FAIL("replay: a trace holds warm-start iterations only (no contrastive loss)");
}

ReplayReport replay_trace(const TrainConfig& cfg, const std::string& path,
                          const std::function<void(const ReplayStep&)>& on_step) {
  const SafeTensorsFile f(path);
  const auto format = f.metadata().find("format");
  U2PL_CHECK(format != f.metadata().end() && format->second == kTraceFormat,
             path << ": not a training trace (metadata format '" << kTraceFormat << "' expected)");
  ReplayReport r;
  r.trace = path;
  const auto source = f.metadata().find("source");
  r.source = source == f.metadata().end() ? "" : source->second;
  r.iterations = meta_int(f, "iterations");
  r.iters_per_epoch = meta_int(f, "iters_per_epoch");
  U2PL_CHECK(r.iterations >= 1 && r.iters_per_epoch >= 1,
             path << ": " << r.iterations << " iterations of epochs of " << r.iters_per_epoch
                  << " iterations; a trace needs at least one of each");

  TrainStep ts(cfg, Device::CPU);
  ts.set_iters_per_epoch(r.iters_per_epoch);
  const int64_t last_epoch = (r.iterations - 1) / r.iters_per_epoch;
  U2PL_CHECK(!ts.semi_phase(int(last_epoch)),
             path << ": iteration " << r.iterations - 1 << " lies in epoch " << last_epoch << ", past the config's warm start"
                  << " (trainer.sup_only_epoch " << cfg.sup_only_epoch << "); a trace holds warm-start iterations only");
  U2PL_CHECK(meta_int(f, "groups") == ts.lr_groups(),
             path << ": " << f.meta("groups") << " parameter groups, the engine has " << ts.lr_groups());
  U2plNet& net = ts.student();
  load_weights_prefixed(net.params(), f, "init.");
  const ParamSet& ps = net.params();
  std::vector<std::vector<float>> init;
  for (size_t i = 0; i < ps.decls().size(); ++i) init.push_back(to_host(ps.value(static_cast<int>(i))));

  const std::vector<std::string> sites = split(f.meta("dropout_sites"), ',');
  const std::vector<std::string> own = net.dropout_sites();
  U2PL_CHECK(std::set<std::string>(sites.begin(), sites.end()) == std::set<std::string>(own.begin(), own.end()),
             path << ": dropout sites " << f.meta("dropout_sites") << ", the network's differ (" << own.size() << " sites)");
  std::set<int64_t> snaps;
  for (const std::string& s : split(f.meta("snapshots"), ' ')) {
    const int64_t n = parse_count(f, "snapshots", s);
    U2PL_CHECK(n >= 1 && n <= r.iterations, path << ": snapshot after " << n << " of " << r.iterations << " iterations");
    snaps.insert(n);
  }

  const int64_t B = cfg.data.batch_size * cfg.replicas, H = cfg.data.train.crop.size[0], W = cfg.data.train.crop.size[1];
  const Shape image{B, 3, H, W};
  Context ctx(Device::CPU);
  for (int64_t it = 0; it < r.iterations; ++it) {
    const std::string p = "iter." + std::to_string(it) + ".";
    U2PL_CHECK(f.shape(p + "image") == image && f.shape(p + "label") == Shape({B, H, W}),
               path << ": " << p << "image " << f.shape(p + "image").str() << " and " << p << "label "
                    << f.shape(p + "label").str() << ", the config's batch is " << image.str() << " and "
                    << Shape({B, H, W}).str());
    const Tensor img = Tensor::from_host(image, f.floats(p + "image"), Device::CPU);
    const Labels lab = Labels::from_host(Shape{B, H, W}, f.ints(p + "label"), Device::CPU);
    for (const std::string& site : sites) {
      const TensorView slot = net.dropout_scale(image, NetMode::Train, site);
      const std::vector<float> scale = f.floats(p + "dropout." + site);
      U2PL_CHECK(int64_t(scale.size()) == slot.numel(),
                 path << ": " << p << "dropout." << site << " holds " << scale.size() << " scales, the site " << slot.numel());
      copy_tensor(slot, TensorView(const_cast<float*>(scale.data()), slot.shape, Device::CPU));
    }
    TraceDraws draws(cfg.seed, it);
    const StepResult out = ts.step(ctx, img.view(), lab.view(), TensorView(), it, int(it / r.iters_per_epoch), draws);
    ReplayStep s;
    s.it = it;
    s.loss = out.sup;
    s.want_loss = recorded(f, p + "loss", 1)[0];
    s.want_lrs = recorded(f, p + "lr", size_t(ts.lr_groups()));
    for (int g = 0; g < ts.lr_groups(); ++g) s.lrs.push_back(ts.lr_at(it, g));
    r.steps.push_back(s);
    if (on_step) on_step(s);
    if (snaps.count(it + 1)) r.snapshots.push_back(compare_state(f, it + 1, ps, init));
  }
  return r;
}

std::string format_replay(const ReplayReport& r) {
  std::ostringstream os;
  os << "Replay of " << r.trace << (r.source.empty() ? "" : " (" + r.source + ")") << ": " << r.iterations
     << " iterations from the same initial weights, batches and dropout scales.\n\n";
  os << "| iteration | loss, trace | loss, engine | relative difference | lr backbone, trace / engine | lr head, trace / engine |\n";
  os << "| --- | --- | --- | --- | --- | --- |\n";
  for (const ReplayStep& s : r.steps) {
    os << "| " << s.it << " | " << std::fixed << std::setprecision(6) << s.want_loss << " | " << s.loss << " | "
       << std::scientific << std::setprecision(2) << (s.want_loss != 0 ? (s.loss - s.want_loss) / s.want_loss : s.loss);
    for (size_t g = 0; g < 2; ++g) {
      os << " | ";
      if (g < s.want_lrs.size()) os << std::setprecision(6) << s.want_lrs[g];
      os << " / ";
      if (g < s.lrs.size()) os << std::setprecision(6) << s.lrs[g];
    }
    os << " |\n";
  }
  for (const ReplaySnapshot& s : r.snapshots) {
    os << "\nAfter " << s.after << " iterations: parameters ‖engine − trace‖ / ‖trace − initial‖ = " << std::scientific
       << std::setprecision(3) << s.params_rel << ", BN running statistics " << s.buffers_rel
       << ". The tensors that differ most against how far the trace moved them:\n\n";
    os << "| tensor | ‖engine − trace‖ | ‖trace − initial‖ | relative |\n| --- | --- | --- | --- |\n";
    for (const TensorGap& g : s.worst)
      os << "| " << g.name << " | " << g.diff << " | " << g.moved << " | " << g.rel() << " |\n";
  }
  return os.str();
}

}  // namespace u2pl
