// The U2PL training loop (u2pl/train/trainer.h): datasets and loaders, the iterations of
// u2pl/train/train_step.h, validation, pictures, logs, curves and checkpoints. Every random draw of
// iteration i comes from Philox counters derived from (seed, stream, i) (PhiloxStepDraws), and
// the loaders' from (seed, epoch, position), so a checkpoint needs no RNG state and a resumed run
// continues bit for bit. Covered by tests/test_trainer.cpp.
#include "u2pl/train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>

#include <yaml-cpp/yaml.h>

#include "data/loader.h"
#include "engine/device_memory.h"
#include "engine/file_io.h"
#include "engine/nccl.h"
#include "engine/upload.h"
#include "u2pl/eval/eval_report.h"
#include "u2pl/eval/predict.h"
#include "u2pl/train/checkpoint.h"
#include "u2pl/train/curves.h"
#include "u2pl/train/train_log.h"
#include "u2pl/train/train_step.h"

namespace u2pl {

namespace fs = std::filesystem;

namespace {

// MemAvailable of /proc/meminfo (what can be allocated without swapping), else the free pages.
size_t available_ram() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  size_t kib = 0;
  std::string unit;
  while (f >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * static_cast<size_t>(sysconf(_SC_PAGE_SIZE));
}

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
  std::signal(sig, SIG_DFL);  // a second signal ends the process at once
}

// FNV-1a over bytes, continuing from h.
uint64_t fnv1a(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

std::string fmt(double v, int prec = 4) {
  char b[64];
  std::snprintf(b, sizeof(b), "%.*f", prec, v);
  return b;
}

class Trainer {
 public:
  Trainer(const TrainConfig& cfg, const TrainRunOptions& opt, const RunPlan& plan);
  TrainResult run();

 private:
  void setup();
  void validate(int64_t iters_done, int epoch);
  void check_run_dir();
  void draw_pictures(U2plNet& net);
  void save(const std::string& name);
  U2plNet& eval_net(int epoch) { return step_.semi_phase(epoch) ? *step_.teacher() : step_.student(); }
  std::string path(const std::string& name) const { return (fs::path(opt_.run_dir) / name).string(); }
  void say(const std::string& line);
  void check_same_start();

  const TrainConfig& cfg_;
  TrainRunOptions opt_;
  RunPlan plan_;
  Comm& comm_;
  bool root_;  // rank 0: prints and writes
  Device dev_;
  Context ctx_;
  TrainStep step_;
  std::unique_ptr<Dataset> labeled_, unlabeled_, val_;
  AugmentSpec aug_;
  std::unique_ptr<FolderLock> lock_;  // the run directory's, while the run lives (rank 0)

  CheckpointState state_;
  int64_t first_iter_ = 0;
  std::string config_yaml_;
  std::unique_ptr<TrainLog> log_;
  std::unique_ptr<TrainProgress> progress_;
  std::vector<IterRecord> iter_records_;
  std::vector<ValRecord> val_records_;
  double last_miou_ = -1;
};

Trainer::Trainer(const TrainConfig& cfg, const TrainRunOptions& opt, const RunPlan& plan)
    : cfg_(cfg),
      opt_(opt),
      plan_(plan),
      comm_(opt.comm ? *opt.comm : world()),
      root_(comm_.root()),
      dev_(opt.device),
      ctx_(opt.device, cfg.deterministic),
      step_(cfg, opt.device, comm_) {
  ctx_.set_workspace_cap(size_t(cfg.conv_workspace_mib) << 20);
  step_.student().set_memory_mode(plan.memory);
}

void Trainer::say(const std::string& line) {
  if (!root_) return;
  if (progress_)
    progress_->message(line);
  else
    std::fprintf(opt_.out, "%s\n", line.c_str());
}

void Trainer::setup() {
  aug_ = train_augment(cfg_);
  labeled_ = std::make_unique<Dataset>(cfg_.data.train_spec(), true);
  if (cfg_.data.semi) {
    DatasetSpec us = cfg_.data.train_spec();
    us.data_list = unlabeled_list_for(us.data_list);
    try {  // the diagnostic scores the pseudo-labels against the unlabeled images' own labels
      unlabeled_ = std::make_unique<Dataset>(us, cfg_.unsup.score_pseudo_labels);
    } catch (const Error& e) {
      if (!cfg_.unsup.score_pseudo_labels) throw;
      throw Error(std::string(e.what()) + " (trainer.unsupervised.score_pseudo_labels needs a label for every " +
                  "unlabeled image)");
    }
  }
  if (cfg_.eval_on) val_ = std::make_unique<Dataset>(cfg_.data.val_spec(), true);
  for (const Dataset* d : {labeled_.get(), unlabeled_.get(), val_.get()})
    if (d)
      for (const std::string& w : d->warnings()) say("warning: " + w);
  const int B = cfg_.global_batch();
  const Dataset& epoch_set = unlabeled_ ? *unlabeled_ : *labeled_;
  const int64_t per_epoch = static_cast<int64_t>(epoch_set.size()) / B;
  U2PL_CHECK(per_epoch > 0, epoch_set.spec().data_list << ": " << epoch_set.size() << " images hold no full batch of "
                                                       << B << " (dataset.batch_size " << cfg_.data.batch_size
                                                       << " × trainer.replicas " << cfg_.replicas << ")");
  step_.set_iters_per_epoch(per_epoch);
}

// Every process must start from the same config and state (weights, checkpoint, bank): compared
// through checksums, so a process that read other files stops the run before the first step.
void Trainer::check_same_start() {
  if (comm_.size() == 1) return;
  struct Sums {
    uint64_t config, state;
  } mine{fnv1a(config_yaml_.data(), config_yaml_.size()), 0};
  const int64_t position[] = {first_iter_, state_.best_iter};  // where each process resumes
  mine.state = fnv1a(position, sizeof(position), mine.state);
  mine.state = fnv1a(&state_.best_miou, sizeof(state_.best_miou), mine.state);
  auto add = [&](TensorView v) {
    const std::vector<float> host = to_host(v);  // device arenas: their copy
    mine.state = fnv1a(host.data(), host.size() * sizeof(float), mine.state);
  };
  add(step_.student().params().values().all());
  add(step_.student().params().buffers().all());
  if (U2plNet* t = step_.teacher()) {
    add(t->params().values().all());
    add(t->params().buffers().all());
  }
  add(step_.momentum());
  if (MemoryBank* b = step_.bank())
    for (int c = 0; c < b->classes(); ++c) {
      const std::vector<float> rows = b->contents(c);
      mine.state = fnv1a(rows.data(), rows.size() * sizeof(float), mine.state);
    }
  const std::vector<Sums> all = comm_.gather_all(mine);
  for (size_t r = 1; r < all.size(); ++r) {
    U2PL_CHECK(all[r].config == all[0].config,
               "process " << r << " resolved another config than process 0 (" << cfg_.file
                          << " or its overrides differ between the processes)");
    U2PL_CHECK(all[r].state == all[0].state,
               "process " << r << " starts from other weights than process 0 (the weights file or the checkpoint "
                             "in " << opt_.run_dir << " differs between the processes' file systems)");
  }
}

void Trainer::draw_pictures(U2plNet& net) {
  if (!val_ || opt_.pictures <= 0) return;
  const fs::path dir = fs::path(opt_.run_dir) / "pictures";
  fs::create_directories(dir);
  const int C = cfg_.net.num_classes;
  for (size_t i = 0; i < val_->size() && i < size_t(opt_.pictures); ++i) {
    const LoadedSample s = val_->load(i);
    const std::string stem = fs::path(val_->sample(i).image_path).stem().string();
    const Tensor input = image_tensor(s.image, cfg_.net, dev_);
    const Prediction p = predict_whole(ctx_, net, input);
    write_png((dir / (stem + "_image.png")).string(), s.image);
    write_png((dir / (stem + "_pred.png")).string(), colourise(p.index, p.width, p.height, C));
    std::vector<int32_t> label(s.label.begin(), s.label.end());
    write_png((dir / (stem + "_label.png")).string(), colourise(label, p.width, p.height, C));
    write_png((dir / (stem + "_entropy.png")).string(), entropy_image(p, C));
  }
}

void Trainer::validate(int64_t iters_done, int epoch) {
  EvalConfig ec;
  ec.data = cfg_.data;
  ec.preset = cfg_.preset;
  EvalOptions eo = eval_options(ec);
  eo.label_pad = cfg_.switches.label_pad;
  const std::vector<std::string> classes = val_->class_names();
  // Each process scores its shard of the list; the confusion matrices sum to the whole list's.
  auto score_of = [&](U2plNet& net) {
    ConfusionMatrix cm = evaluate_split(*val_, network_logits(ctx_, net), cfg_.net, eo, SaveOptions{}, nullptr,
                                        Shard{comm_.rank(), comm_.size()});
    const int64_t K = cm.num_classes();
    comm_.allreduce_sum(cm.counts(), K * K);
    return score(cm);
  };
  const bool teacher_used = step_.semi_phase(epoch);
  U2plNet& main_net = eval_net(epoch);
  const Scores main = score_of(main_net);
  const std::optional<Scores> student =
      teacher_used ? std::optional<Scores>(score_of(step_.student())) : std::nullopt;
  last_miou_ = main.miou;
  state_.eval_model = teacher_used ? "teacher" : "student";
  const bool best = main.miou > state_.best_miou;
  if (best) {
    state_.best_miou = main.miou;
    state_.best_iter = iters_done;
  }
  if (!root_) return;  // the figures are the same on every process; rank 0 writes them
  ValRecord r;
  r.iter = iters_done;
  r.epoch = epoch;
  r.model = teacher_used ? "teacher" : "student";
  r.miou = main.miou;
  r.iou = main.iou;
  r.classes = classes;
  r.pixel_acc = main.pixel_acc;
  r.mean_acc = main.mean_acc;
  r.best = best;
  std::string line = "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(cfg_.epochs) + " val " + r.model +
                     " mIoU " + fmt(100 * main.miou, 2);
  if (student) {
    const Scores& st = *student;
    ValRecord s = r;
    s.model = "student";
    s.miou = st.miou;
    s.iou = st.iou;
    s.pixel_acc = st.pixel_acc;
    s.mean_acc = st.mean_acc;
    s.best = false;
    log_->write(s);
    val_records_.push_back(s);
    line += " (student " + fmt(100 * st.miou, 2) + ")";
  }
  log_->write(r);
  val_records_.push_back(r);
  if (r.best) {
    line += ", best so far";
  } else {
    line += ", best " + fmt(100 * state_.best_miou, 2) + " at iteration " + std::to_string(state_.best_iter);
  }
  say(line);
  draw_pictures(main_net);
  write_curves_svg(path("curves.svg"), iter_records_, val_records_, fs::path(cfg_.file).filename().string());
  if (r.best) save("ckpt_best.safetensors");
}

void Trainer::save(const std::string& name) {
  if (!root_) return;
  save_checkpoint(path(name), state_, step_.student(), step_.teacher(), step_.momentum(),
                  cfg_.save_memory_bank ? step_.bank() : nullptr);
}

// Before training: the run directory is made, locked (a second run on it is refused) and written
// to (refused with the cause otherwise); temporary files a killed write left are removed; too
// little free space for a checkpoint is said.
void Trainer::check_run_dir() {
  std::error_code ec;
  fs::create_directories(opt_.run_dir, ec);
  U2PL_CHECK(!ec, opt_.run_dir << ": cannot make the run directory: " << ec.message());
  U2PL_CHECK(fs::is_directory(opt_.run_dir), opt_.run_dir << ": the run directory is not a folder");
  lock_ = std::make_unique<FolderLock>(opt_.run_dir);  // before anything in the folder is touched
  const std::string probe = path(".write_test");
  try {
    write_file_atomic(probe, "u2pl");
  } catch (const Error& e) {
    throw Error(opt_.run_dir + ": the run directory cannot be written: " + e.what());
  }
  fs::remove(probe);
  for (const fs::directory_entry& e : fs::directory_iterator(opt_.run_dir))
    if (e.is_regular_file() && e.path().extension() == ".tmp") {
      fs::remove(e.path());
      say("removed " + e.path().string() + ", left by a write that was interrupted");
    }
  const int64_t need = checkpoint_data_bytes(step_.student(), step_.teacher(), step_.momentum(),
                                            cfg_.save_memory_bank ? step_.bank() : nullptr);
  const int64_t free = free_bytes(opt_.run_dir);
  if (free >= 0 && free < 2 * need)
    say("warning: " + std::to_string(free >> 20) + " MiB free where the run directory is; a checkpoint takes about " +
        std::to_string(need >> 20) + " MiB, and replacing one needs room for two");
}

TrainResult Trainer::run() {
  setup();
  if (root_) check_run_dir();
  config_yaml_ = resolved_yaml(cfg_);
  state_.seed = cfg_.seed;
  state_.eval_model = step_.semi_phase(0) ? "teacher" : "student";
  state_.config_yaml = config_yaml_;
  const std::string latest = path("ckpt_latest.safetensors");
  if (opt_.resume) {
    U2PL_CHECK(fs::exists(latest), latest << ": no checkpoint to resume from");
    const LoadedCheckpoint lc = load_checkpoint(latest, step_.student(), step_.teacher(), step_.momentum(), step_.bank());
    U2PL_CHECK(lc.state.seed == cfg_.seed,
               latest << ": the checkpoint was trained with trainer.seed " << lc.state.seed << ", the config says "
                      << cfg_.seed);
    U2PL_CHECK(lc.state.iter <= step_.total_iters(),
               latest << ": the checkpoint is at iteration " << lc.state.iter << ", beyond this schedule's "
                      << step_.total_iters());
    if (step_.bank() && !lc.had_bank)
      say("warning: the checkpoint holds no memory bank: the queues restart empty (not bit-exact)");
    // The replicas fix the math: another R is another run (under mpirun R defaults to the process count).
    const YAML::Node was = YAML::Load(lc.state.config_yaml)["trainer"]["replicas"];
    const int was_replicas = was ? was.as<int>() : 1;
    U2PL_CHECK(was_replicas == cfg_.replicas,
               latest << ": the run was trained with trainer.replicas " << was_replicas << ", this one has "
                      << cfg_.replicas << (cfg_.replicas_given ? "" : " (not set: one per process)")
                      << "; set trainer.replicas=" << was_replicas
                      << " to continue it, on any number of processes that divides it");
    if (lc.state.config_yaml != config_yaml_)
      say("warning: the config differs from the checkpoint's; the resumed run is not the same run");
    state_ = lc.state;
    state_.config_yaml = config_yaml_;
    first_iter_ = state_.iter;
    say("resuming " + latest + " at iteration " + std::to_string(first_iter_) + "/" + std::to_string(step_.total_iters()));
  } else {
    U2PL_CHECK(!fs::exists(latest), opt_.run_dir << " already holds a run (ckpt_latest.safetensors): pass --resume "
                                                 << "to continue it, or choose another run directory");
  }
  check_same_start();
  if (root_) {
    write_file_atomic(path("config.yaml"), config_yaml_);
    log_ = std::make_unique<TrainLog>(path("log.jsonl"), first_iter_);
    const LogRecords prev = read_log(path("log.jsonl"));
    iter_records_ = prev.iters;
    val_records_ = prev.vals;
  }

  TrainResult res;
  res.total = step_.total_iters();
  res.memory = step_.student().memory_mode();
  if (first_iter_ >= step_.total_iters()) {
    res.iterations = first_iter_;
    res.best_miou = state_.best_miou;
    res.best_iter = state_.best_iter;
    res.eval_model = state_.eval_model;
    return res;
  }
  const int B = cfg_.global_batch();  // every replica's images; replica r takes [r·b, (r+1)·b)
  const int64_t first_epoch = first_iter_ / step_.iters_per_epoch(), first_batch = first_iter_ % step_.iters_per_epoch();
  LoaderSpec ls;
  ls.batch_size = B;
  ls.workers = cfg_.data.workers;
  ls.seed = cfg_.seed;
  ls.first_epoch = first_epoch;
  ls.first_batch = first_batch;
  ls.epochs = cfg_.epochs - first_epoch;
  ls.stream = 0;
  if (comm_.size() > 1) {  // this process's replicas' positions of each global batch
    ls.take_first = int64_t(step_.first_replica()) * cfg_.data.batch_size;
    ls.take_count = int64_t(step_.local_replicas()) * cfg_.data.batch_size;
  }
  if (unlabeled_) {
    ls.order = LoaderOrder::Repeated;
    ls.epoch_length = static_cast<int64_t>(unlabeled_->size());
  } else {
    ls.order = LoaderOrder::Shuffled;
  }
  Loader lab_loader(*labeled_, aug_, ls);
  std::unique_ptr<Loader> unl_loader;
  if (unlabeled_ && step_.has_teacher()) {
    LoaderSpec us = ls;
    us.order = LoaderOrder::Shuffled;
    us.stream = 1;
    us.epoch_length = 0;
    unl_loader = std::make_unique<Loader>(*unlabeled_, aug_, us);
  }
  if (root_)
    progress_ = std::make_unique<TrainProgress>(opt_.out, opt_.terminal, step_.total_iters(), first_iter_, cfg_.epochs);
  for (const std::string& l : opt_.config_log) say(l);
  say(plan_.memory_line);
  const bool unsup = step_.has_teacher(), contra = step_.uses_contrastive();
  const char* method = contra ? "U2PL" : unsup ? (cfg_.unsup.apply_aug == "cutmix" ? "CutMix" : "MT") : "SupOnly";
  say(std::string("training ") + method +
      " on " + device_name(dev_) + ": " + std::to_string(cfg_.epochs) + " epochs of " +
      std::to_string(step_.iters_per_epoch()) + " iterations, batch " + std::to_string(B) +
      (unsup ? " + " + std::to_string(B) : "") +
      (cfg_.replicas > 1 ? " (" + std::to_string(cfg_.replicas) + " replicas of " +
                               std::to_string(cfg_.data.batch_size) + ")"
                         : "") +
      (comm_.size() > 1 ? " in " + std::to_string(comm_.size()) + " processes of " +
                              std::to_string(step_.local_replicas()) + " replicas each"
                        : "") +
      ", run directory " + opt_.run_dir);

  g_stop_signal = 0;
  // SIGINT and SIGTERM stop after the current iteration with a checkpoint; so does SIGUSR1, which
  // Open MPI's mpirun forwards to every process (its own SIGINT and SIGTERM kill the job).
  auto prev_int = std::signal(SIGINT, on_stop_signal);
  auto prev_term = std::signal(SIGTERM, on_stop_signal);
  auto prev_usr1 = std::signal(SIGUSR1, on_stop_signal);
  struct Restore {
    decltype(prev_int) i, t, u;
    ~Restore() {
      std::signal(SIGINT, i);
      std::signal(SIGTERM, t);
      std::signal(SIGUSR1, u);
    }
  } restore{prev_int, prev_term, prev_usr1};

  // The batches of iteration `it` go to upload slot it % 2. The next iteration's are fetched and
  // uploaded while the current step runs on the device (its while_running), so neither the
  // loaders' hand-over nor the host-to-device copy waits for the step.
  Uploader uploads(ctx_);
  struct Staged {
    std::optional<Batch> lb, ub;
    TensorView img_l, img_u;
    LabelView lab_l;
  };
  auto stage = [&](int64_t it, Staged& s) {
    s.lb = lab_loader.next();
    U2PL_CHECK(s.lb.has_value(), "the labeled loader ended early at iteration " << it);
    s.ub.reset();
    if (unl_loader) {
      s.ub = unl_loader->next();
      U2PL_CHECK(s.ub.has_value(), "the unlabeled loader ended early at iteration " << it);
    }
    const int slot = static_cast<int>(it % 2);
    s.img_l = uploads.upload(s.lb->images.view(), slot, 0);
    s.lab_l = uploads.upload(s.lb->labels.view(), slot, 1);
    s.img_u = s.ub ? uploads.upload(s.ub->images.view(), slot, 2) : TensorView();
  };
  Staged cur, next;
  if (first_iter_ < step_.total_iters()) stage(first_iter_, cur);

  const auto t0 = std::chrono::steady_clock::now();
  double time_base = iter_records_.empty() ? 0.0 : iter_records_.back().time_s;
  int64_t done_here = 0;
  auto last = t0;
  double rate = 0;
  for (int64_t it = first_iter_; it < step_.total_iters(); ++it) {
    const int epoch = static_cast<int>(it / step_.iters_per_epoch());
    const int slot = static_cast<int>(it % 2);
    PhiloxStepDraws draws(cfg_.seed, it, cfg_.replicas);
    StepResult o;
    try {
      uploads.ready(slot);
      const LabelView truth_u = cfg_.unsup.score_pseudo_labels && cur.ub ? cur.ub->labels.view() : LabelView();
      o = step_.step(
          ctx_, cur.img_l, cur.lab_l, cur.img_u, it, epoch, draws,
          [&] {
            if (it + 1 < step_.total_iters()) stage(it + 1, next);
          },
          truth_u);
      uploads.done(slot);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "; the run stops here, ckpt_latest.safetensors keeps the last good state " +
                  "(iteration " + std::to_string(state_.iter) + ")");
    }
    std::swap(cur, next);
    draws.check_budget();
    const auto now = std::chrono::steady_clock::now();
    const double dt = std::chrono::duration<double>(now - last).count();
    last = now;
    rate = rate == 0 ? 1.0 / std::max(dt, 1e-9) : 0.9 * rate + 0.1 / std::max(dt, 1e-9);

    IterRecord r;
    r.iter = it;
    r.epoch = epoch;
    r.lr = step_.lr_at(it);
    r.time_s = time_base + std::chrono::duration<double>(now - t0).count();
    r.it_s = rate;
    r.terms = {{"loss", o.total}, {"sup", o.sup}};
    if (unsup) r.terms.emplace_back("unsup", o.unsup);
    if (contra) r.terms.emplace_back("contra", o.contra);
    if (step_.semi_phase(epoch)) {
      r.stats = {{"alpha_t", 100.0 - cfg_.unsup_percent_at(epoch)},
                 {"thresh", o.thresh},
                 {"reliable", o.reliable},
                 {"ema", o.ema}};
      if (o.pseudo.pixels > 0) {
        const PseudoLabelCounts& p = o.pseudo;
        r.stats.emplace_back("pl_acc", double(p.correct) / double(p.pixels));
        if (p.reliable > 0) r.stats.emplace_back("pl_acc_reliable", double(p.reliable_correct) / double(p.reliable));
        if (p.pixels > p.reliable) {
          r.stats.emplace_back("pl_acc_unreliable",
                               double(p.correct - p.reliable_correct) / double(p.pixels - p.reliable));
          if (contra)
            r.stats.emplace_back("pl_unreliable_true_negative",
                                 double(p.unreliable_true_negative) / double(p.pixels - p.reliable));
        }
      }
      if (contra) {
        const MemoryBank& bank = *step_.bank();
        r.stats.emplace_back("contra_low", o.contra_low);
        r.stats.emplace_back("contra_high", o.contra_high);
        r.stats.emplace_back("contra_terms", o.contra_terms);
        r.stats.emplace_back("queue_fill", double(bank.total_size()) / double(bank.total_capacity()));
      }
    }
    if (root_) {
      log_->write(r);
      iter_records_.push_back(r);
      progress_->update(r);
    }
    state_.iter = it + 1;
    ++done_here;

    const bool epoch_end = state_.iter % step_.iters_per_epoch() == 0;
    // A signal reaches the processes at different moments: they stop together when any has one.
    int64_t votes[2] = {g_stop_signal != 0, opt_.stop_after >= 0 && done_here >= opt_.stop_after};
    comm_.allreduce_sum(votes, 2);
    const bool signalled = votes[0] > 0, stop = signalled || votes[1] > 0;
    if (epoch_end && val_ && ((epoch + 1) % cfg_.eval_interval == 0 || epoch + 1 == cfg_.epochs))
      validate(state_.iter, epoch);
    if (epoch_end || stop) save("ckpt_latest.safetensors");
    if (stop) {
      say(signalled ? "stopped by signal at iteration " + std::to_string(state_.iter) + "; continue with --resume"
                    : "stopped after " + std::to_string(done_here) + " iterations (stop_after)");
      res.interrupted = true;
      break;
    }
  }
  progress_.reset();
  if (!val_ && root_)
    write_curves_svg(path("curves.svg"), iter_records_, val_records_, fs::path(cfg_.file).filename().string());
  res.iterations = state_.iter;
  res.best_miou = state_.best_miou;
  res.best_iter = state_.best_iter;
  res.last_miou = last_miou_;
  res.eval_model = state_.eval_model;
  return res;
}

}  // namespace

AugmentSpec train_augment(const TrainConfig& cfg) {
  AugmentSpec a;
  a.scale = cfg.data.train.rand_resize;
  a.mode = cfg.switches.scale_mode;
  a.flip = cfg.data.train.flip;
  a.crop_h = cfg.data.train.crop.size[0];
  a.crop_w = cfg.data.train.crop.size[1];
  a.label_pad = cfg.switches.label_pad;
  a.mean = cfg.data.mean;
  a.std = cfg.data.std;
  return a;
}


size_t memory_bank_bytes(const TrainConfig& cfg, int64_t dim) {
  return (size_t(cfg.contrastive.queue_size) * size_t(cfg.net.num_classes - 1) +
          size_t(cfg.contrastive.queue_size_background)) *
         size_t(dim) * sizeof(float);
}

RunPlan check_runnable(const TrainConfig& cfg, Device dev, int processes) {
  const auto& crop = cfg.data.train.crop;
  U2PL_CHECK(crop.type == "rand" || crop.type == "center",
             cfg.file << ": dataset.train.crop: training needs fixed-size crops (type rand), got type " << crop.type);
  const int stride = 32;  // the encoder's total downsampling before dilation
  U2PL_CHECK(crop.size[0] >= stride && crop.size[1] >= stride,
             cfg.file << ": dataset.train.crop.size [" << crop.size[0] << ", " << crop.size[1]
                      << "]: each side must be at least " << stride << " (the encoder's stride)");
  U2PL_CHECK(cfg.net.num_classes >= 2, cfg.file << ": net.num_classes must be at least 2, got " << cfg.net.num_classes);
  if (cfg.unsup.enabled)
    U2PL_CHECK(cfg.data.semi, cfg.file << ": trainer.unsupervised needs unlabeled images: dataset.type "
                                       << cfg.data.type << " has none (use " << cfg.data.type << "_semi)");
  U2PL_CHECK(!cfg.unsup.score_pseudo_labels || cfg.unsup.enabled,
             cfg.file << ": trainer.unsupervised.score_pseudo_labels scores pseudo-labels, which only the "
                      << "unsupervised loss makes; this config has no trainer.unsupervised.drop_percent or other "
                      << "key of that loss");
  if (cfg.contrastive.enabled && cfg.contrastive.loss_weight > 0)
    U2PL_CHECK(cfg.unsup.enabled, cfg.file << ": trainer.contrastive needs trainer.unsupervised (its pseudo-labels "
                                           << "and entropy); add the section or set contrastive.loss_weight 0");
  for (const std::string& f : {cfg.net.weights, cfg.pretrain})
    U2PL_CHECK(f.empty() || fs::exists(f), cfg.file << ": weights file " << f << " does not exist");
  // Memory: the activations of a step (in each memory mode; the teacher's plans and the losses'
  // buffers in the student's idle memory); the step's batches and other buffers; the parameters,
  // gradients and momentum, the teacher's copy and both sets of BN buffers; the bank; on CUDA the
  // context's scratch (StepMemory::workspace; the CPU's, oneDNN's, is left to the margin of `auto`).
  const int B = replicas_per_process(cfg, processes) * cfg.data.batch_size;  // this process's images
  const bool semi = cfg.unsup.enabled;
  U2plNet probe(cfg.net);  // declared, not allocated
  const Shape batch{B, 3, crop.size[0], crop.size[1]};
  const ParamSet& ps = probe.params();
  const size_t state = (semi ? 4 : 3) * ps.values().bytes() + (semi ? 2 : 1) * ps.buffers().bytes();
  size_t bank = 0;
  const int rep = ps.find("decoder.representation.8.weight");
  if (semi && cfg.contrastive.enabled && cfg.contrastive.loss_weight > 0 && rep >= 0)
    bank = memory_bank_bytes(cfg, ps.decls()[size_t(rep)].shape[0]);
  if (dev == Device::CUDA && processes > 1) bank *= 2;  // and its staging copy (TrainStep::push_all_negatives)
  std::vector<std::pair<MemoryMode, size_t>> needs;  // fastest first
  size_t buffers = 0, workspace = 0;  // the step's own (the same in every mode); the CUDA scratch
  for (const MemoryMode m : kMemoryModes) {
    const StepMemory step = step_memory(cfg, probe, batch, m);
    buffers = step.buffers;
    workspace = dev == Device::CUDA ? step.workspace : 0;
    needs.emplace_back(m, step.activations + step.buffers + state + bank + workspace);
  }
  size_t avail = 0;
  if (dev == Device::CUDA) {
    size_t total = 0;
    cuda_memory_info(&avail, &total);
  } else {
    avail = available_ram();
  }
  constexpr double GiB = double(1 << 30);
  std::ostringstream figures;
  for (const auto& [m, need] : needs)
    figures << (m == needs.front().first ? "" : ", ") << memory_mode_name(m) << " " << std::fixed
            << std::setprecision(2) << double(need) / GiB << " GiB";
  const std::string what = std::string("batch ") + std::to_string(B) + (semi ? " + " + std::to_string(B) : "") +
                           (cfg.replicas > 1 ? " (" + std::to_string(cfg.replicas) + " replicas)" : "") +
                           " at crop " + std::to_string(crop.size[0]) + "x" + std::to_string(crop.size[1]);
  std::ostringstream free_text;
  free_text << std::fixed << std::setprecision(2) << double(avail) / GiB << " GiB " << (dev == Device::CUDA ? "free" : "available")
            << " on the " << device_name(dev);
  const bool automatic = cfg.memory == "auto";
  // auto: the fastest mode that leaves a tenth of the memory free; a named mode: the one named.
  const auto chosen = std::find_if(needs.begin(), needs.end(), [&](const std::pair<MemoryMode, size_t>& n) {
    return automatic ? double(n.second) <= kAutoMemoryShare * double(avail)
                     : memory_mode_name(n.first) == cfg.memory;
  });
  U2PL_CHECK(chosen != needs.end() && chosen->second < avail,
             cfg.file << ": " << what << " needs " << (automatic ? "in every memory mode more than " + std::to_string(int(kAutoMemoryShare * 100)) + " % of"
                                                   : std::string("more than"))
                      << " the " << free_text.str() << " (trainer.memory " << cfg.memory << "; per mode: "
                      << figures.str() << ", of which " << (bank >> 20) << " MiB of memory bank, " << (state >> 20)
                      << " MiB of parameters and optimiser state, " << (buffers >> 20) << " MiB of batches and "
                      << "buffers"
                      << (workspace ? ", " + std::to_string(workspace >> 20) + " MiB of CUDA workspace" : "")
                      << "): lower dataset.batch_size or the "
                      << "crop" << (automatic ? "" : ", or choose another trainer.memory") << ", or the queue sizes");
  RunPlan r;
  r.memory = chosen->first;
  std::ostringstream line;
  line << "memory: " << memory_mode_name(chosen->first) << (automatic ? " (trainer.memory auto)" : "") << ", "
       << std::fixed << std::setprecision(2) << double(chosen->second) / GiB << " GiB planned of " << free_text.str()
       << " (" << figures.str() << ")";
  r.memory_line = line.str();
  return r;
}

TrainResult train(const TrainConfig& cfg, const TrainRunOptions& opt) {
  const Comm& comm = opt.comm ? *opt.comm : world();
  if (opt.device == Device::CUDA) use_process_device(comm);  // before any device memory of the run
  const RunPlan plan = check_runnable(cfg, opt.device, comm.size());
  Trainer t(cfg, opt, plan);
  return t.run();
}

}  // namespace u2pl
