// Tests of the training loop (u2pl/train/trainer.h) and its checkpoints (u2pl/train/checkpoint.h)
// on a tiny synthetic set (u2pl_synth's generator) and a ResNet-18 at width/16: bit-exact resume
// mid-epoch across the warm start's end, the teacher through the warm start, handover and EMA, the
// baselines' loss terms, a non-finite loss stopping the run with the last good checkpoint kept,
// the configs refused before any work, and evaluation tools reading a training checkpoint.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "data/synth.h"
#include "engine/file_io.h"
#include "engine/safetensors.h"
#include "layers/loss.h"
#include "layers/resize.h"
#include "tests/config_test_util.h"
#include "tests/file_limit.h"
#include "tests/gradcheck.h"
#include "tests/temp_dir.h"
#include "tests/trainer_test_util.h"
#include "u2pl/net/weights.h"
#include "u2pl/train/checkpoint.h"
#include "u2pl/train/grad_reduce.h"
#include "u2pl/train/train_log.h"
#include "u2pl/train/train_step.h"
#include "u2pl/train/trainer.h"

using namespace u2pl;
using u2pl::test::error_of;
using u2pl::test::random_floats;
using u2pl::test::TempDir;
using u2pl::test::quiet;
using u2pl::test::run;
namespace fs = std::filesystem;

namespace {

// The tiny set (tests/trainer_test_util.h) in a folder of its own.
struct TinySet {
  TempDir dir{"trainer_data"};
  explicit TinySet(int classes = 4) { write_synth_dataset(u2pl::test::tiny_synth_spec(classes), dir.path); }
};

TrainConfig tiny(const TinySet& set, const std::string& method, std::vector<std::string> overrides = {},
                 int classes = 4) {
  const std::string path =
      u2pl::test::write_yaml("trainer_" + method, u2pl::test::tiny_train_config(set.dir.path, classes, method));
  return load_train_config(path, overrides, nullptr);
}

// Every tensor of two checkpoint files, bitwise.
void expect_same_checkpoints(const std::string& a, const std::string& b) {
  const SafeTensorsFile fa(a), fb(b);
  REQUIRE(fa.entries().size() == fb.entries().size());
  for (const auto& [name, e] : fa.entries()) {
    INFO(name);
    REQUIRE(fb.has(name));
    CHECK(fa.floats(name) == fb.floats(name));
  }
  CHECK(fa.meta("iter") == fb.meta("iter"));
}

std::vector<float> tensor_of(const std::string& file, const std::string& name) { return SafeTensorsFile(file).floats(name); }

}  // namespace

TEST_CASE("trainer: N iterations in one run equal N/2, resume, N/2 (mid-epoch, across the handover)") {
  TinySet set;
  TempDir runs("trainer_resume");
  const TrainConfig cfg = tiny(set, "u2pl");
  const std::string whole = runs.path + "/whole", split = runs.path + "/split";
  const TrainResult a = run(cfg, quiet(whole));
  CHECK(a.iterations == 12);
  CHECK(a.total == 12);
  CHECK_FALSE(a.interrupted);
  const TrainResult b1 = run(cfg, quiet(split, 6));
  CHECK(b1.interrupted);
  CHECK(b1.iterations == 6);
  CHECK(SafeTensorsFile(split + "/ckpt_latest.safetensors").meta("iter") == "6");
  const TrainResult b2 = run(cfg, quiet(split, -1, true));
  CHECK(b2.iterations == 12);
  expect_same_checkpoints(whole + "/ckpt_latest.safetensors", split + "/ckpt_latest.safetensors");
  CHECK(a.best_miou == b2.best_miou);
  // The logs agree record for record (no iteration twice), up to the timings.
  const LogRecords la = read_log(whole + "/log.jsonl"), lb = read_log(split + "/log.jsonl");
  REQUIRE(la.iters.size() == 12);
  REQUIRE(lb.iters.size() == 12);
  for (size_t i = 0; i < la.iters.size(); ++i) {
    CHECK(la.iters[i].iter == lb.iters[i].iter);
    CHECK(la.iters[i].terms == lb.iters[i].terms);
  }
  CHECK(la.vals.size() == lb.vals.size());
  for (const char* f : {"config.yaml", "curves.svg", "ckpt_best.safetensors", "pictures"})
    CHECK_MESSAGE(fs::exists(split + "/" + f), f);
  // Without --resume an existing run is not overwritten.
  CHECK(error_of([&] { run(cfg, quiet(split)); }).find("already holds a run") != std::string::npos);
}

TEST_CASE("trainer: every memory mode trains bit for bit as keep (warm start, handover, EMA, queues wrapping)") {
  TinySet set;
  TempDir runs("trainer_memory");
  const std::pair<const char*, std::vector<std::string>> cases[] = {
      {"suponly", {}}, {"cutmix", {}}, {"u2pl", {"trainer.preset=paper"}}, {"u2pl", {"trainer.preset=official"}}};
  int k = 0;
  for (const auto& [method, ov] : cases) {
    INFO(method << (ov.empty() ? "" : " " + ov[0]));
    std::vector<std::string> dirs;
    std::vector<TrainResult> results;
    for (const MemoryMode m : kMemoryModes) {
      dirs.push_back(runs.path + "/" + std::to_string(k) + memory_mode_name(m));
      std::vector<std::string> o = ov;
      o.push_back(std::string("trainer.memory=") + memory_mode_name(m));
      results.push_back(run(tiny(set, method, o), quiet(dirs.back())));
      CHECK(results.back().iterations == 12);
      CHECK(results.back().memory == m);
    }
    ++k;
    const LogRecords la = read_log(dirs[0] + "/log.jsonl");
    for (size_t j = 1; j < dirs.size(); ++j) {
      INFO(memory_mode_name(kMemoryModes[j]));
      CHECK(results[j].best_miou == results[0].best_miou);
      expect_same_checkpoints(dirs[0] + "/ckpt_latest.safetensors", dirs[j] + "/ckpt_latest.safetensors");
      const LogRecords lb = read_log(dirs[j] + "/log.jsonl");
      REQUIRE(la.iters.size() == lb.iters.size());
      for (size_t i = 0; i < la.iters.size(); ++i) CHECK(la.iters[i].terms == lb.iters[i].terms);
    }
  }
}

TEST_CASE("train step: the teacher's plans and the losses' buffers live in the student's plan, as step_memory counts") {
  const TrainConfig cfg = load_train_config(
      test::write_yaml("step_memory", test::tiny_train_config("/nonexistent", 4, "u2pl")), {"trainer.seed=5"}, nullptr);
  const Shape labeled{cfg.data.batch_size, 3, 33, 33}, both{2 * labeled.n(), 3, 33, 33};
  const size_t n = size_t(labeled.numel());
  const Tensor img_l = Tensor::from_host(labeled, random_floats(n, 1, -2.f, 2.f), Device::CPU);
  const Tensor img_u = Tensor::from_host(labeled, random_floats(n, 2, -2.f, 2.f), Device::CPU);
  std::vector<int32_t> lv(size_t(labeled.n() * 33 * 33));
  for (size_t i = 0; i < lv.size(); ++i) lv[i] = int32_t(i / 97 % 4);
  const Labels lab = Labels::from_host(Shape{labeled.n(), 33, 33}, lv, Device::CPU);
  for (const MemoryMode m : kMemoryModes) {
    INFO(memory_mode_name(m));
    TrainStep ts(cfg, Device::CPU);
    ts.student().set_memory_mode(m);
    ts.set_iters_per_epoch(1);  // iteration 0: the warm start; 1: the handover, every U2PL term
    Context ctx(Device::CPU);
    for (int64_t it = 0; it < 2; ++it) {
      PhiloxStepDraws d(cfg.seed, it);
      ts.step(ctx, img_l, lab, img_u, it, int(it), d);
    }
    CHECK(ts.student().plan_bytes(both, NetMode::Train) == step_memory(cfg, ts.student(), labeled, m).activations);
    CHECK(ts.teacher()->owned_plan_bytes() == 0);
  }
}

TEST_CASE("train step: pseudo-labels scored against themselves are all right, the truth mixed as CutMix mixes them") {
  const std::string yaml = test::write_yaml("step_score", test::tiny_train_config("/nonexistent", 4, "u2pl"));
  const int64_t S = 33;
  uint64_t seed = 1;  // one whose iteration 2 mixes (CutMix mixes an iteration with probability 1/2)
  while (!PhiloxStepDraws(seed, 2).cutmix(0, load_train_config(yaml, {}, nullptr).data.batch_size, S, S)) ++seed;
  const TrainConfig cfg = load_train_config(yaml, {"trainer.seed=" + std::to_string(seed)}, nullptr);
  REQUIRE(cfg.unsup.apply_aug == "cutmix");
  const Shape batch{cfg.data.batch_size, 3, S, S}, labels{batch.n(), S, S};
  const size_t n = size_t(batch.numel());
  const Tensor img_l = Tensor::from_host(batch, random_floats(n, 1, -2.f, 2.f), Device::CPU);
  std::vector<float> u = random_floats(n, 2, -0.5f, 0.5f);  // each unlabeled image of its own brightness
  for (size_t i = 0; i < n; ++i) u[i] += 3.f * float(int64_t(i) / (3 * S * S) % 2) - 1.5f;
  const Tensor img_u = Tensor::from_host(batch, u, Device::CPU);
  std::vector<int32_t> lv(size_t(labels.numel()));
  for (size_t i = 0; i < lv.size(); ++i) lv[i] = int32_t(i / 97 % 4);
  const Labels lab = Labels::from_host(labels, lv, Device::CPU);
  TrainStep ts(cfg, Device::CPU);
  ts.set_iters_per_epoch(1);  // iteration 0: the warm start; 1: the handover; 2: the EMA teacher
  Context ctx(Device::CPU);
  for (int64_t it = 0; it < 2; ++it) {
    PhiloxStepDraws d(cfg.seed, it);
    const StepResult o = ts.step(ctx, img_l, lab, img_u, it, int(it), d);
    CHECK(o.pseudo.pixels == 0);  // not asked for
  }
  // The truth: the pseudo-labels iteration 2 makes (eval forward, upsampled, argmax).
  const NetOutputs te = ts.teacher()->forward(ctx, img_u, NetMode::Eval, nullptr);
  const Tensor up(Shape{batch.n(), cfg.net.num_classes, S, S}, Device::CPU);
  bilinear_forward(ctx, te.pred, up);
  const Labels truth(labels, Device::CPU);
  argmax_channels(ctx, up, truth);
  const std::vector<int32_t> t = truth.to_host();
  const int64_t hw = S * S;  // images 0 and 1 have other pseudo-labels: the mixing matters
  REQUIRE(std::inner_product(t.begin(), t.begin() + hw, t.begin() + hw, int64_t(0), std::plus<>(),
                             std::not_equal_to<>()) > hw / 10);
  PhiloxStepDraws d2(cfg.seed, 2);
  const StepResult o = ts.step(ctx, img_l, lab, img_u, 2, 2, d2, {}, truth);
  CHECK(o.pseudo.pixels == labels.numel());
  CHECK(o.pseudo.correct == o.pseudo.pixels);
  CHECK(o.pseudo.reliable_correct == o.pseudo.reliable);
  CHECK(double(o.pseudo.reliable) / double(o.pseudo.pixels) == doctest::Approx(o.reliable));
}

TEST_CASE("trainer: two replicas take twice the images an iteration, log their mean and resume bit for bit") {
  TinySet set;
  TempDir runs("trainer_replicas");
  // 8 unlabeled images, 2 replicas of batch 2: 2 iterations an epoch, 6 in all.
  const TrainConfig cfg = tiny(set, "u2pl", {"trainer.replicas=2"});
  const std::string whole = runs.path + "/whole", split = runs.path + "/split";
  const TrainResult a = run(cfg, quiet(whole));
  CHECK(a.total == 6);
  CHECK(a.iterations == 6);
  const LogRecords la = read_log(whole + "/log.jsonl");
  REQUIRE(la.iters.size() == 6);
  bool contra = false;
  for (const IterRecord& r : la.iters)
    for (const auto& [name, v] : r.stats) contra = contra || (name == "contra_terms" && v > 0);
  CHECK(contra);  // both replicas' terms past the warm start
  run(cfg, quiet(split, 3));  // mid-epoch, in the handover epoch
  // Another replica count is another run: refused, saying which to set.
  const std::string other = error_of([&] { run(tiny(set, "u2pl"), quiet(split, -1, true)); });
  CHECK_MESSAGE(other.find("was trained with trainer.replicas 2, this one has 1") != std::string::npos, other);
  CHECK_MESSAGE(other.find("set trainer.replicas=2 to continue it") != std::string::npos, other);
  run(cfg, quiet(split, -1, true));
  expect_same_checkpoints(whole + "/ckpt_latest.safetensors", split + "/ckpt_latest.safetensors");
  // One replica of batch 4 is another run: per-replica losses and draws differ.
  const TrainConfig wide = tiny(set, "u2pl", {"dataset.batch_size=4"});
  const std::string w = runs.path + "/wide";
  CHECK(run(wide, quiet(w)).total == 6);
  CHECK(tensor_of(w + "/ckpt_latest.safetensors", "student.decoder.classifier.8.weight") !=
        tensor_of(whole + "/ckpt_latest.safetensors", "student.decoder.classifier.8.weight"));
  // 8 images do not fill one iteration of 8 replicas of 2.
  CHECK(error_of([&] { run(tiny(set, "u2pl", {"trainer.replicas=8"}), quiet(runs.path + "/eight")); })
            .find("hold no full batch of 16 (dataset.batch_size 2 × trainer.replicas 8)") != std::string::npos);
}

TEST_CASE("trainer: the teacher through the warm start, the handover epoch and the EMA") {
  TinySet set;
  TempDir runs("trainer_ema");
  for (const std::string preset : {"paper", "official"}) {
    INFO(preset);
    const TrainConfig cfg = tiny(set, "u2pl", {"trainer.preset=" + preset, "trainer.contrastive.num_negatives=8",
                                               "trainer.contrastive.num_queries=4"});
    const std::string dir = runs.path + "/" + preset, ck = dir + "/ckpt_latest.safetensors";
    U2plNet fresh(cfg.net);
    fresh.allocate(Device::CPU, cfg.seed + 1, false);
    // After the warm start (epoch 0, 4 iterations): the teacher kept its initial parameters, but
    // its train-mode forwards moved its BN statistics.
    run(cfg, quiet(dir, 4));
    const SafeTensorsFile f4(ck);
    const int w = fresh.params().find("decoder.classifier.8.weight");
    CHECK(f4.floats("teacher.decoder.classifier.8.weight") == to_host(fresh.params().value(w)));
    const int rm = fresh.params().find("encoder.bn1.running_mean");
    CHECK(f4.floats("teacher.encoder.bn1.running_mean") != to_host(fresh.params().value(rm)));
    CHECK(f4.meta("eval_model") == "student");
    // The handover epoch (1): the teacher follows the student exactly.
    run(cfg, quiet(dir, 4, true));
    CHECK(tensor_of(ck, "teacher.decoder.classifier.8.weight") == tensor_of(ck, "student.decoder.classifier.8.weight"));
    CHECK(SafeTensorsFile(ck).meta("eval_model") == "teacher");
    // Iteration 8, the first EMA step: k = 8 − 4 = 4, decay 1 − 1/5 = 0.8.
    const std::vector<float> t8 = tensor_of(ck, "teacher.encoder.conv1.0.weight");
    run(cfg, quiet(dir, 1, true));
    const std::vector<float> t9 = tensor_of(ck, "teacher.encoder.conv1.0.weight"),
                             s9 = tensor_of(ck, "student.encoder.conv1.0.weight");
    for (size_t i = 0; i < t9.size(); i += 37) CHECK(t9[i] == 0.8f * t8[i] + (1 - 0.8f) * s9[i]);
  }
}

TEST_CASE("trainer: SupOnly, MT and CutMix log their terms; evaluation reads the checkpoint's teacher") {
  TinySet set;
  TempDir runs("trainer_baselines");
  for (const std::string m : {"suponly", "mt", "cutmix"}) {
    INFO(m);
    const TrainConfig cfg = tiny(set, m, {"trainer.epochs=2"});
    const std::string dir = runs.path + "/" + m;
    const TrainResult r = run(cfg, quiet(dir));
    CHECK(r.iterations == 8);
    const LogRecords log = read_log(dir + "/log.jsonl");
    REQUIRE(log.iters.size() == 8);
    std::vector<std::string> names;
    for (const auto& t : log.iters.back().terms) names.push_back(t.first);
    const std::vector<std::string> want =
        m == "suponly" ? std::vector<std::string>{"loss", "sup"} : std::vector<std::string>{"loss", "sup", "unsup"};
    CHECK(names == want);
    const SafeTensorsFile ck(dir + "/ckpt_latest.safetensors");
    CHECK(ck.meta("teacher") == (m == "suponly" ? "no" : "yes"));
    CHECK(ck.meta("bank") == "no");
    U2plNet net(cfg.net);
    net.allocate(Device::CPU, 99, false);
    const WeightReport wr = load_weights(net.params(), dir + "/ckpt_latest.safetensors");
    const std::string model = m == "suponly" ? "student" : "teacher";
    CHECK(wr.source.find(model) != std::string::npos);
    const int id = net.params().find("decoder.classifier.8.weight");
    CHECK(to_host(net.params().value(id)) == ck.floats(model + ".decoder.classifier.8.weight"));
  }
}

TEST_CASE("pseudo-label counts: pixels with a label, right pseudo-labels, reliable ones among them") {
  // truth 255 is unknown; filtered 255 is an unreliable pseudo-label.
  const std::vector<int32_t> truth{0, 1, 2, 255, 1, 3, 0, 2};
  const std::vector<int32_t> pseudo{0, 2, 2, 1, 1, 3, 1, 0};
  const std::vector<int32_t> filtered{0, 255, 255, 1, 1, 255, 1, 0};
  const PseudoLabelCounts c = count_pseudo_labels(truth.data(), pseudo.data(), filtered.data(), 8, 255);
  CHECK(c.pixels == 7);
  CHECK(c.correct == 4);           // pixels 0, 2, 4, 5
  CHECK(c.reliable == 4);          // pixels 0, 4, 6, 7
  CHECK(c.reliable_correct == 2);  // pixels 0, 4
  PseudoLabelCounts sum = c;
  sum += c;
  CHECK(sum.reliable_correct == 4);
  CHECK(count_pseudo_labels(truth.data(), pseudo.data(), filtered.data(), 8, 0).pixels == 6);
  // Ranks by descending logit, 2 images of 3 classes and 2 pixels: image 0 pixel 0 orders the
  // classes (2, 0, 1), pixel 1 (1, 2, 0); image 1 pixel 0 (0, 1, 2), pixel 1 (2, 1, 0).
  const std::vector<float> logits{0.5f, 0.1f, 0.2f, 0.9f, 0.9f, 0.3f,  // image 0: classes 0, 1, 2 × 2 pixels
                                  3.f,  1.f,  2.f,  2.f,  1.f,  3.f};  // image 1
  const std::vector<int32_t> t2{1, 0, 2, 255}, unreliable{255, 255, 255, 255};
  // the true classes rank 2, 2, 2; the last pixel has no label
  CHECK(count_true_in_ranks(t2.data(), logits.data(), unreliable.data(), 2, 3, 2, 2, 3, 255) == 3);
  CHECK(count_true_in_ranks(t2.data(), logits.data(), unreliable.data(), 2, 3, 2, 0, 2, 255) == 0);
  const std::vector<int32_t> one_reliable{255, 0, 255, 255};
  CHECK(count_true_in_ranks(t2.data(), logits.data(), one_reliable.data(), 2, 3, 2, 2, 3, 255) == 2);
}

TEST_CASE("trainer: score_pseudo_labels logs the pseudo-labels' accuracy and changes no number of the training") {
  TinySet set;
  TempDir runs("trainer_score_pl");
  const std::string plain = runs.path + "/plain", scored = runs.path + "/scored";
  const TrainConfig cfg = tiny(set, "u2pl");
  run(cfg, quiet(plain));
  run(tiny(set, "u2pl", {"trainer.unsupervised.score_pseudo_labels=True"}), quiet(scored));
  expect_same_checkpoints(plain + "/ckpt_latest.safetensors", scored + "/ckpt_latest.safetensors");
  const LogRecords la = read_log(plain + "/log.jsonl"), lb = read_log(scored + "/log.jsonl");
  REQUIRE(la.iters.size() == lb.iters.size());
  int scored_iters = 0;
  for (size_t i = 0; i < la.iters.size(); ++i) {
    INFO("iteration " << i);
    CHECK(la.iters[i].terms == lb.iters[i].terms);
    std::map<std::string, double> st(lb.iters[i].stats.begin(), lb.iters[i].stats.end());
    const bool semi = st.count("reliable") > 0;
    CHECK(st.count("pl_acc") == (semi ? 1u : 0u));
    if (!semi) continue;
    ++scored_iters;
    const double all = st["pl_acc"], rel = st.count("pl_acc_reliable") ? st["pl_acc_reliable"] : all;
    const double unrel = st.count("pl_acc_unreliable") ? st["pl_acc_unreliable"] : all;
    CHECK(all >= 0.0);
    CHECK(all <= 1.0);
    CHECK(all >= std::min(rel, unrel) - 1e-12);  // a mean of the two
    CHECK(all <= std::max(rel, unrel) + 1e-12);
    CHECK(st.count("pl_unreliable_true_negative") == st.count("pl_acc_unreliable"));  // U2PL: the contrastive loss
    if (st.count("pl_unreliable_true_negative")) {
      CHECK(st["pl_unreliable_true_negative"] >= 0.0);
      CHECK(st["pl_unreliable_true_negative"] <= 1.0);
    }
  }
  CHECK(scored_iters > 0);
  // The diagnostic needs the unsupervised loss, and a label for every unlabeled image.
  CHECK(error_of([&] { check_runnable(tiny(set, "suponly", {"trainer.unsupervised.score_pseudo_labels=True"}),
                                      Device::CPU); })
            .find("score_pseudo_labels scores pseudo-labels, which only the unsupervised loss makes") !=
        std::string::npos);
  TinySet holed;
  std::ifstream unl(holed.dir.path + "/splits/4/unlabeled.txt");
  std::string first;
  REQUIRE(std::getline(unl, first));
  fs::remove(holed.dir.path + "/SegmentationClassAug/" + first + ".png");
  const TrainConfig scored_holed = tiny(holed, "u2pl", {"trainer.unsupervised.score_pseudo_labels=True"});
  const std::string missing = error_of([&] { run(scored_holed, quiet(runs.path + "/holed")); });
  CHECK_MESSAGE(missing.find("missing label") != std::string::npos, missing);
  CHECK_MESSAGE(missing.find("score_pseudo_labels needs a label for every unlabeled image") != std::string::npos,
                missing);
  run(tiny(holed, "u2pl"), quiet(runs.path + "/holed_plain", 1));  // without it, no label is needed
}

TEST_CASE("trainer: a non-finite loss stops the run naming the iteration and term, the last good checkpoint stays") {
  TinySet set;
  TempDir runs("trainer_nan");
  const std::string dir = runs.path + "/run";
  run(tiny(set, "suponly"), quiet(dir, 4));
  const std::vector<float> before = tensor_of(dir + "/ckpt_latest.safetensors", "student.encoder.conv1.0.weight");
  const TrainConfig bad = tiny(set, "suponly", {"trainer.optimizer.kwargs.lr=1e30"});
  const std::string msg = error_of([&] { run(bad, quiet(dir, -1, true)); });
  INFO(msg);
  CHECK(msg.find("the sup loss is") != std::string::npos);
  CHECK(msg.find("iteration ") != std::string::npos);
  CHECK(msg.find("last good state (iteration ") != std::string::npos);
  const SafeTensorsFile ck(dir + "/ckpt_latest.safetensors");
  CHECK(ck.meta("iter") == "4");
  CHECK(ck.floats("student.encoder.conv1.0.weight") == before);
}

TEST_CASE("trainer: configs that cannot run are refused before any work, naming the reason") {
  TinySet set;
  const auto refused = [&](const std::string& method, std::vector<std::string> ov) {
    return error_of([&] { check_runnable(tiny(set, method, ov), Device::CPU); });
  };
  CHECK(refused("u2pl", {}).empty());
  CHECK(refused("u2pl", {"dataset.train.crop.size=[16, 16]"}).find("at least 32") != std::string::npos);
  CHECK(refused("u2pl", {"dataset.train.crop.type=center"}).empty());
  CHECK(refused("u2pl", {"dataset.train.crop.type=none"}).find("fixed-size crops") != std::string::npos);
  CHECK(refused("mt", {"dataset.type=pascal"}).find("needs unlabeled images") != std::string::npos);
  const std::string big = refused("u2pl", {"dataset.train.crop.size=[40000, 40000]"});
  CHECK_MESSAGE(big.find("needs in every memory mode more than 90 % of the") != std::string::npos, big);
  CHECK_MESSAGE(big.find("(trainer.memory auto; per mode: keep ") != std::string::npos, big);
  CHECK_MESSAGE(big.find(" GiB, recompute_bn ") != std::string::npos, big);
  const std::string named = refused("u2pl", {"dataset.train.crop.size=[40000, 40000]", "trainer.memory=keep"});
  CHECK_MESSAGE(named.find("or choose another trainer.memory") != std::string::npos, named);
  const std::string bank = refused("u2pl", {"trainer.contrastive.queue_size=2000000000"});
  CHECK(bank.find("MiB of memory bank, ") != std::string::npos);
  CHECK(bank.find("MiB of batches and buffers)") != std::string::npos);  // the CPU counts no CUDA workspace
  CHECK(bank.find(" 0 MiB of memory bank") == std::string::npos);
  CHECK(refused("u2pl", {"trainer.memory=smallest"}).find("trainer.memory") != std::string::npos);
  CHECK(refused("u2pl", {"trainer.conv_workspace_mib=-1"}).find("trainer.conv_workspace_mib") != std::string::npos);
  // auto takes the fastest mode that fits; a named mode is taken as named.
  const RunPlan fast = check_runnable(tiny(set, "u2pl"), Device::CPU);
  CHECK(fast.memory == MemoryMode::Keep);
  CHECK_MESSAGE(fast.memory_line.find("memory: keep (trainer.memory auto), ") == 0, fast.memory_line);
  const RunPlan named_bn = check_runnable(tiny(set, "u2pl", {"trainer.memory=recompute_bn"}), Device::CPU);
  CHECK(named_bn.memory == MemoryMode::RecomputeBn);
  CHECK_MESSAGE(named_bn.memory_line.find("memory: recompute_bn, ") == 0, named_bn.memory_line);
  CHECK(refused("u2pl", {"trainer.contrastive.queue_size=2000000000", "trainer.contrastive.loss_weight=0"})
            .empty());  // no contrastive loss, no bank
  CHECK(refused("u2pl", {"net.encoder.kwargs.weights=/nonexistent/r18.safetensors"}).find("does not exist") !=
        std::string::npos);
}

TEST_CASE("trainer: a checkpoint that cannot be written stops the run naming it; the previous one stays") {
  TinySet set;
  TempDir runs("trainer_write_fail");
  const TrainConfig cfg = tiny(set, "u2pl");
  const std::string dir = runs.path + "/run", latest = dir + "/ckpt_latest.safetensors";
  run(cfg, quiet(dir, 4));  // a checkpoint at iteration 4
  const auto ckpt_bytes = fs::file_size(latest);
  REQUIRE(ckpt_bytes > 300000);
  std::string e;
  {
    test::FileSizeLimit limit(200000);  // the log, config and pictures fit; a checkpoint does not
    e = error_of([&] { run(cfg, quiet(dir, -1, true)); });
  }
  CHECK_MESSAGE(e.find(latest + ": cannot write: File too large") != std::string::npos, e);
  CHECK(SafeTensorsFile(latest).meta("iter") == "4");
  CHECK(fs::file_size(latest) == ckpt_bytes);
  for (const fs::directory_entry& f : fs::directory_iterator(dir)) CHECK(f.path().extension() != ".tmp");
  // The log holds whole records only, and resuming again finishes the run.
  const LogRecords log = read_log(dir + "/log.jsonl");
  CHECK(log.iters.size() >= 4);
  write_file_atomic(dir + "/stale.tmp", "left by a killed write");
  CHECK(run(cfg, quiet(dir, -1, true)).iterations == 12);
  CHECK_FALSE(fs::exists(dir + "/stale.tmp"));
  // A run directory another run holds is refused, and nothing in it is touched.
  {
    write_file_atomic(dir + "/busy.tmp", "a live write of the other run");
    FolderLock other(dir);
    const std::string busy = error_of([&] { run(cfg, quiet(dir, -1, true)); });
    CHECK_MESSAGE(busy.find(dir + ": in use by another process") != std::string::npos, busy);
    CHECK(fs::exists(dir + "/busy.tmp"));
  }
  // A run directory that cannot be made or written is refused before any work.
  write_file_atomic(runs.path + "/file", "x");
  const std::string not_dir = error_of([&] { run(cfg, quiet(runs.path + "/file")); });
  CHECK_MESSAGE(not_dir.find(runs.path + "/file: cannot make the run directory") != std::string::npos, not_dir);
  const std::string under = error_of([&] { run(cfg, quiet(runs.path + "/file/run")); });
  CHECK_MESSAGE(under.find(runs.path + "/file/run: cannot make the run directory: Not a directory") !=
                    std::string::npos,
                under);
}

TEST_CASE("checkpoint: a file that is not a training checkpoint, or of another network, is refused") {
  TinySet set;
  TempDir runs("trainer_ckpt");
  const TrainConfig cfg = tiny(set, "suponly");
  U2plNet net(cfg.net);
  net.allocate(Device::CPU, 1, true);
  Tensor mom(Shape{net.params().values().floats()}, Device::CPU);
  fill_zero(mom.view());
  const std::string plain = runs.path + "/weights.safetensors";
  save_weights(net.params(), plain, {{"source", "test"}});
  CHECK(error_of([&] { load_checkpoint(plain, net, nullptr, mom, nullptr); }).find("not a u2pl_train checkpoint") !=
        std::string::npos);
  CheckpointState st;
  st.iter = 3;
  st.eval_model = "student";
  const std::string ck = runs.path + "/ck.safetensors";
  save_checkpoint(ck, st, net, nullptr, mom, nullptr);
  CHECK(load_checkpoint(ck, net, nullptr, mom, nullptr).state.iter == 3);
  U2plNet teacher(cfg.net);
  teacher.allocate(Device::CPU, 2, false);
  CHECK(error_of([&] { load_checkpoint(ck, net, &teacher, mom, nullptr); }).find("has no teacher") != std::string::npos);
  // The free-space figure is the file's data section exactly (its size less the 8-byte header
  // length and the JSON header), with a teacher and without.
  for (const U2plNet* t : {static_cast<const U2plNet*>(nullptr), static_cast<const U2plNet*>(&teacher)}) {
    const std::string sized = runs.path + "/sized.safetensors";
    save_checkpoint(sized, st, net, t, mom, nullptr);
    std::ifstream in(sized, std::ios::binary);
    uint64_t header = 0;
    in.read(reinterpret_cast<char*>(&header), 8);
    CHECK(int64_t(fs::file_size(sized) - 8 - header) == checkpoint_data_bytes(net, t, mom, nullptr));
  }
  Tensor short_mom(Shape{5}, Device::CPU);
  CHECK(error_of([&] { load_checkpoint(ck, net, nullptr, short_mom, nullptr); }).find("optimizer.momentum") !=
        std::string::npos);
  {  // metadata that does not parse
    SafeTensorsWriter w;
    w.add("optimizer.momentum", mom);
    w.set_metadata("format", kTrainCheckpointFormat);
    w.set_metadata("iter", "12x");
    const std::string odd = runs.path + "/odd.safetensors";
    w.write(odd);
    CHECK(error_of([&] { load_checkpoint(odd, net, nullptr, mom, nullptr); })
              .find("checkpoint metadata iter = '12x' is not an integer") != std::string::npos);
  }
  {  // a model to evaluate that is neither network (found by fuzz/fuzz_checkpoint.cpp)
    SafeTensorsFile good(ck);
    SafeTensorsWriter w;
    for (const auto& [key, value] : good.metadata()) w.set_metadata(key, key == "eval_model" ? "studnet" : value);
    for (const auto& e : good.entries()) w.add(e.first, e.second.dtype, e.second.shape, good.floats(e.first).data());
    const std::string odd = runs.path + "/odd_model.safetensors";
    w.write(odd);
    CHECK(error_of([&] { load_checkpoint(odd, net, nullptr, mom, nullptr); })
              .find("checkpoint metadata eval_model = 'studnet' (expected teacher or student)") != std::string::npos);
  }
  const TrainConfig wide = tiny(set, "suponly", {"net.encoder.kwargs.width_divisor=8"});
  U2plNet other(wide.net);
  other.allocate(Device::CPU, 1, true);
  Tensor other_mom(Shape{other.params().values().floats()}, Device::CPU);
  CHECK(error_of([&] { load_checkpoint(ck, other, nullptr, other_mom, nullptr); }).find("optimizer.momentum") !=
        std::string::npos);
}

TEST_CASE("trainer: the public VOC configs run as they are, with data paths and a CPU-sized network overridden") {
  if (!u2pl::test::have_public_configs()) return;
  TinySet set;
  fs::remove(set.dir.path + "/classes.txt");  // the VOC layout with its 21 class names
  TempDir runs("trainer_public");
  for (const std::string name : {"pascal_1464_ours", "pascal_1464_suponly"}) {
    INFO(name);
    const std::string d = set.dir.path;
    const std::vector<std::string> ov = {
        "dataset.train.data_root=" + d, "dataset.train.data_list=" + d + "/splits/4/labeled.txt",
        "dataset.val.data_root=" + d, "dataset.val.data_list=" + d + "/splits/val.txt",
        "dataset.train.crop.size=[33, 33]", "dataset.val.crop.size=[41, 41]", "dataset.batch_size=2",
        "trainer.epochs=1", "trainer.sup_only_epoch=0", "net.encoder.type=u2pl.models.resnet.resnet18",
        "net.encoder.kwargs.width_divisor=32", "net.decoder.kwargs.inner_planes=8",
        "trainer.contrastive.num_queries=4", "trainer.contrastive.num_negatives=8",
        "trainer.contrastive.queue_size=40", "trainer.contrastive.queue_size_background=40"};
    std::vector<std::string> log;
    const TrainConfig cfg = load_train_config(u2pl::test::kPublicConfigs + name + ".yaml",
                                              name == "pascal_1464_ours" ? ov : std::vector<std::string>(ov.begin(), ov.end() - 4),
                                              &log);
    const TrainResult r = run(cfg, quiet(runs.path + "/" + name, 2));
    CHECK(r.iterations == 2);
    const LogRecords lr = read_log(runs.path + "/" + name + "/log.jsonl");
    REQUIRE(lr.iters.size() == 2);
    CHECK(lr.iters[0].terms.size() == (name == "pascal_1464_ours" ? 4u : 2u));
  }
}

TEST_CASE("trainer: 2-class data trains with the contrastive loss (rank thresholds adapted, said in the log)") {
  TinySet set(2);
  TempDir runs("trainer_two");
  std::vector<std::string> log;
  const std::string path =
      u2pl::test::write_yaml("trainer_two", u2pl::test::tiny_train_config(set.dir.path, 2, "u2pl"));
  const TrainConfig cfg = load_train_config(path, {"trainer.epochs=2"}, &log);
  CHECK(cfg.contrastive.low_rank == 1);
  CHECK(cfg.contrastive.high_rank == 2);
  std::string said;
  for (const std::string& l : log) said += l + "\n";
  INFO(said);
  CHECK(said.find("trainer.contrastive.low_rank 2") != std::string::npos);
  CHECK(said.find("trainer.contrastive.high_rank 4 clamped to net.num_classes 2") != std::string::npos);
  run(cfg, quiet(runs.path + "/run"));
  const LogRecords lr = read_log(runs.path + "/run/log.jsonl");
  REQUIRE(lr.iters.size() == 8);
  double terms = 0;
  for (size_t i = 4; i < 8; ++i) {
    for (const auto& [k, v] : lr.iters[i].stats)
      if (k == "contra_terms") terms += v;
    for (const auto& [k, v] : lr.iters[i].terms) CHECK(std::isfinite(v));
  }
  CHECK(terms > 0);
}

TEST_CASE("trainer: missing data fails before the run directory is made; checkpoints without the bank") {
  TinySet set;
  TempDir runs("trainer_data_bank");
  const std::string missing = runs.path + "/missing";
  const TrainConfig bad = tiny(set, "u2pl", {"dataset.val.data_list=" + set.dir.path + "/splits/nope.txt"});
  CHECK(error_of([&] { run(bad, quiet(missing)); }).find("nope.txt") != std::string::npos);
  CHECK_FALSE(fs::exists(missing));

  const std::string dir = runs.path + "/nobank";
  const TrainConfig cfg = tiny(set, "u2pl", {"saver.save_memory_bank=False"});
  run(cfg, quiet(dir, 5));
  const SafeTensorsFile ck(dir + "/ckpt_latest.safetensors");
  CHECK(ck.meta("bank") == "no");
  CHECK_FALSE(ck.has("bank.0"));
  CHECK(run(cfg, quiet(dir, 2, true)).iterations == 7);  // resumes with empty queues (and says so)
}

namespace {
// A world of one that records the sums started (offset in floats from `base`, length).
struct RecordingComm : Comm {
  const float* base = nullptr;
  std::vector<std::pair<int64_t, int64_t>> started;
  int waits = 0;
  void allreduce_sum(float*, int64_t) override {}
  void allreduce_sum(double*, int64_t) override {}
  void allreduce_sum(int64_t*, int64_t) override {}
  void allgather(const void* mine, size_t bytes, void* all) override { std::memcpy(all, mine, bytes); }
  std::vector<char> allgatherv(const void* mine, size_t bytes) override {
    return std::vector<char>(static_cast<const char*>(mine), static_cast<const char*>(mine) + bytes);
  }
  void start_allreduce_sum(float* d, int64_t n) override { started.emplace_back(d - base, n); }
  void progress() override {}
  void wait_all() override { ++waits; }
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};
}  // namespace

TEST_CASE("gradient all-reduce: buckets of whole parameters cover the arena, started as backward fills them") {
  TinySet set;
  const TrainConfig cfg = tiny(set, "u2pl");
  U2plNet net(cfg.net);
  net.allocate(Device::CPU, 1, true);
  const ParamSet& ps = net.params();
  RecordingComm comm;
  comm.base = ps.grads().all().data;
  GradientReducer r(comm, ps, 4096);  // small buckets: several of them
  REQUIRE(r.buckets() > 3);
  Context cpu(Device::CPU);
  r.begin(cpu);
  // Backward's order: the parameters from the last to the first; the last bucket starts once its
  // last parameter is in.
  std::vector<int> ids;
  for (size_t id = 0; id < ps.decls().size(); ++id)
    if (ps.decls()[id].trainable) ids.push_back(int(id));
  std::sort(ids.begin(), ids.end(), [&](int a, int b) { return ps.grad(a).data > ps.grad(b).data; });
  r.ready(ps.grad(ids[0]));
  CHECK(error_of([&] { r.ready(ps.grad(ids[0])); }).find("written twice in one backward") != std::string::npos);
  CHECK(error_of([&] { r.ready(ps.values().all()); }).find("no parameter of this network") != std::string::npos);
  for (size_t i = 1; i < ids.size() / 2; ++i) r.ready(ps.grad(ids[i]));
  const size_t early = comm.started.size();
  CHECK(early >= 1);
  CHECK(r.started_early() == int(early));
  r.finish();  // the rest (parameters backward did not reach) start here
  CHECK(comm.waits == 1);
  REQUIRE(int(comm.started.size()) == r.buckets());
  // Together the sums cover the whole arena exactly once.
  std::vector<std::pair<int64_t, int64_t>> ranges = comm.started;
  std::sort(ranges.begin(), ranges.end());
  int64_t at = 0;
  for (const auto& [off, n] : ranges) {
    CHECK(off == at);
    at = off + n;
  }
  CHECK(at == ps.grads().all().numel());
  // The first buckets started hold the last parameters.
  CHECK(comm.started[0].first + comm.started[0].second == ps.grads().all().numel());
}
