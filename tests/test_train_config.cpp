// u2pl/train/train_config.*: the four public configs under both presets, the preset / file /
// command-line precedence and its log, strictness (unknown keys in the file and on the command
// line, known-unused warnings), the validation errors, the ablation keys with alpha_t, and the
// resolved_yaml round trip.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "tests/config_test_util.h"
#include "u2pl/train/train_config.h"

using namespace u2pl;
using namespace u2pl::test;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool logged(const std::vector<std::string>& log, const std::string& line) {
  for (const auto& l : log)
    if (l.find(line) != std::string::npos) return true;
  return false;
}

// A small valid semi config (VOC).
const char kBase[] = R"(dataset:
  type: pascal_semi
  train:
    data_root: voc
    data_list: splits/labeled.txt
    flip: True
    rand_resize: [0.5, 2.0]
    crop: {type: rand, size: [65, 65]}
  val:
    data_root: voc
    data_list: splits/val.txt
  batch_size: 2
trainer:
  epochs: 3
  optimizer: {type: SGD, kwargs: {lr: 0.01, momentum: 0.9, weight_decay: 0.0001}}
  lr_scheduler: {mode: poly, kwargs: {power: 0.9}}
  unsupervised:
    drop_percent: 80
    apply_aug: cutmix
  contrastive:
    low_rank: 3
    high_rank: 20
    temperature: 0.5
net:
  num_classes: 21
  encoder: {type: u2pl.models.resnet.resnet18}
  decoder: {type: u2pl.models.decoder.dec_deeplabv3_plus}
)";

TrainConfig load_text(const std::string& tag, const std::string& text, const std::vector<std::string>& ov = {},
                      std::vector<std::string>* log = nullptr) {
  return load_train_config(write_yaml(tag, text), ov, log);
}

}  // namespace

TEST_CASE("train config: the public configs load under both presets") {
  if (!have_public_configs()) {
    MESSAGE("public configs absent; skipped");
    return;
  }
  for (const char* preset : {"paper", "official"}) {
    const bool off = std::string(preset) == "official";
    const std::vector<std::string> ov{std::string("trainer.preset=") + preset};
    std::vector<std::string> log;
    const TrainConfig v = load_train_config(kPublicConfigs + "pascal_1464_ours.yaml", ov, &log);
    CHECK(v.preset == preset);
    CHECK(v.epochs == 80);
    CHECK(v.sup_only_epoch == 1);
    CHECK(v.lr == doctest::Approx(0.001));
    CHECK(v.weight_decay == doctest::Approx(0.0001));
    CHECK(v.unsup.enabled);
    CHECK(v.contrastive.enabled);
    CHECK(v.contrastive.num_queries == 256);
    CHECK(v.contrastive.num_negatives == 50);
    CHECK(v.contrastive.loss_weight == doctest::Approx(off ? 1.0 : 0.1));
    CHECK(v.switches.scale_by_valid == off);
    CHECK(v.switches.label_pad == (off ? 0 : 255));
    CHECK(v.switches.teacher_copy_bn == !off);
    CHECK(v.switches.queue_index_bug == off);
    CHECK((v.switches.anchor_rule == LowMaskRule::LowestAlpha) == off);
    CHECK(v.contrastive.high_rank == 20);
    CHECK(v.criterion == "CELoss");
    CHECK(logged(log, "trainer.unsupervised.TTA: not used"));
    CHECK(logged(log, "trainer.contrastive.unsupervised_entropy_ignore: not used"));
    CHECK(logged(log, "dataset.noise_std: not used"));
    CHECK(logged(log, "trainer.contrastive.num_queries = 256 (file; preset paper: 50)") == !off);
    CHECK(logged(log, "trainer.contrastive.num_negatives = 50 (file; preset paper: 256)") == !off);
    if (off) CHECK(!logged(log, "trainer.contrastive.num_queries ="));

    const TrainConfig vs = load_train_config(kPublicConfigs + "pascal_1464_suponly.yaml", ov, nullptr);
    CHECK(!vs.unsup.enabled);
    CHECK(!vs.contrastive.enabled);
    CHECK(!vs.net.rep_head);
    CHECK(vs.data.batch_size == 8);

    log.clear();
    const TrainConfig c = load_train_config(kPublicConfigs + "cityscapes_744_ours.yaml", ov, &log);
    CHECK(c.sup_only_epoch == 0);  // set in the file
    CHECK(logged(log, "trainer.sup_only_epoch = 0 (file; preset paper: 20)") == !off);
    CHECK(c.net.num_classes == 19);
    CHECK(c.contrastive.high_rank == 19);
    CHECK(logged(log, "high_rank 20 clamped to net.num_classes 19"));
    CHECK(c.criterion == "ohem");
    CHECK(c.ohem_min_kept == 100000);
    CHECK(c.ohem_thresh == doctest::Approx(0.7));
    CHECK(c.auto_resume);
    CHECK(c.net.aux);

    const TrainConfig cs = load_train_config(kPublicConfigs + "cityscapes_744_suponly.yaml", ov, nullptr);
    CHECK(cs.sup_only_epoch == (off ? 0 : 20));  // preset default: the file omits it
    CHECK(cs.start_epochs == 0);
    CHECK(cs.lr == doctest::Approx(0.01));
  }
}

TEST_CASE("train config: command-line overrides win and are logged") {
  std::vector<std::string> log;
  const TrainConfig c = load_text("tc_ov", kBase,
                                  {"trainer.epochs=2", "dataset.train.crop.size=[33,33]",
                                   "trainer.contrastive.queue_index_bug=True", "trainer.seed=7",
                                   "saver.run_dir=runs/x"},
                                  &log);
  CHECK(c.epochs == 2);
  CHECK(c.data.train.crop.size[0] == 33);
  CHECK(c.switches.queue_index_bug);
  CHECK(c.seed == 7);
  CHECK(c.run_dir == "runs/x");
  CHECK(c.contrastive.num_queries == 50);
  CHECK(c.contrastive.loss_weight == doctest::Approx(0.1));
  CHECK(logged(log, "trainer.epochs = 2 (command line; preset paper: 0)"));
  CHECK(logged(log, "dataset.train.crop.size = [33, 33] (command line; file: [65, 65])"));
  CHECK(logged(log, "trainer.contrastive.queue_index_bug = True (command line; preset paper: False)"));
  // A file value of a preset key, then the command line over it.
  const std::string f = replace_once(kBase, "    temperature: 0.5\n", "    temperature: 0.5\n    num_queries: 64\n");
  CHECK(load_text("tc_ov2", f).contrastive.num_queries == 64);
  CHECK(load_text("tc_ov2", f, {"trainer.contrastive.num_queries=8"}).contrastive.num_queries == 8);
}

TEST_CASE("train config: unknown keys and bad values are errors naming their source") {
  const std::string f = replace_once(kBase, "  epochs: 3\n", "  epochs: 3\n  epoch: 4\n");
  const std::string e1 = error_of([&] { load_text("tc_unk", f); });
  CHECK(e1.find("tc_unk.yaml:15: trainer.epoch: unknown key") != std::string::npos);
  const std::string e2 = error_of([&] { load_text("tc_unk2", kBase, {"trainer.contrastive.num_query=5"}); });
  CHECK(e2.find("command line 'trainer.contrastive.num_query=5'") == 0);
  CHECK(e2.find("trainer.contrastive.num_query: unknown key") != std::string::npos);
  const std::string e3 = error_of([&] { load_text("tc_unk3", kBase, {"trainer.epochs=abc"}); });
  CHECK(e3.find("command line 'trainer.epochs=abc'") == 0);
  CHECK(e3.find("expected an integer") != std::string::npos);
  CHECK(error_of([&] { load_text("tc_unk4", kBase, {"noequals"}); }).find("expected section.key=value") !=
        std::string::npos);
  CHECK(error_of([&] { load_text("tc_unk5", kBase, {"trainer.epochs.x=1"}); }).find("trainer.epochs is not a map") !=
        std::string::npos);
  CHECK(error_of([&] { load_text("tc_unk6", kBase, {"trainer.preset=fast"}); }).find("expected paper | official") !=
        std::string::npos);
  CHECK(error_of([&] { load_text("tc_unk7", replace_once(kBase, "type: SGD", "type: Adam")); })
            .find("trainer.optimizer.type: expected SGD") != std::string::npos);
  CHECK(error_of([&] { load_text("tc_unk8", kBase, {"trainer.unsupervised.scale_mode=halves"}); })
            .find("expected uniform | two_halves") != std::string::npos);
}

TEST_CASE("train config: known-unused keys warn") {
  std::vector<std::string> log;
  load_text("tc_warn", replace_once(kBase, "    drop_percent: 80\n", "    drop_percent: 80\n    TTA: False\n"), {},
            &log);
  CHECK(logged(log, "tc_warn.yaml:19: trainer.unsupervised.TTA: not used"));
}

TEST_CASE("train config: validation refuses configs that cannot run") {
  const std::string e1 = error_of([&] { load_text("tc_val1", kBase, {"net.decoder.kwargs.rep_head=False"}); });
  CHECK(e1.find("trainer.contrastive: the contrastive loss needs the representation head") != std::string::npos);
  CHECK(error_of([&] {
          load_text("tc_val2", kBase, {"net.decoder.kwargs.rep_head=False", "trainer.contrastive.loss_weight=0"});
        }) == "");
  {  // too few classes for the rank thresholds: adapted, and said
    std::vector<std::string> log;
    const TrainConfig few =
        load_text("tc_val3", kBase, {"trainer.contrastive.low_rank=21", "trainer.contrastive.high_rank=25"}, &log);
    CHECK(few.contrastive.low_rank == 20);
    CHECK(few.contrastive.high_rank == 21);
    CHECK(logged(log, "trainer.contrastive.low_rank 21 >= net.num_classes 21: set to 20"));
  }
  const std::string folder = replace_once(kBase, "type: pascal_semi", "type: folder_semi");
  CHECK(error_of([&] { load_text("tc_val4", folder, {"net.num_classes=1"}); }).find("net.num_classes") !=
        std::string::npos);
  std::vector<std::string> log;
  const TrainConfig c = load_text("tc_val5", folder, {"net.num_classes=5", "dataset.ignore_label=255"}, &log);
  CHECK(c.contrastive.high_rank == 5);
  CHECK(logged(log, "high_rank 20 clamped to net.num_classes 5"));
  CHECK(c.contrastive_params().high_rank == 5);
}

TEST_CASE("train config: resolved_yaml round-trips") {
  std::vector<std::string> paths{yaml_path("tc_rt_base")};
  write_yaml("tc_rt_base", kBase);
  if (have_public_configs())
    for (const char* f : {"pascal_1464_ours", "pascal_1464_suponly", "cityscapes_744_ours", "cityscapes_744_suponly"})
      paths.push_back(kPublicConfigs + f + ".yaml");
  for (const auto& p : paths)
    for (const char* preset : {"paper", "official"}) {
      const TrainConfig a = load_train_config(p, {std::string("trainer.preset=") + preset}, nullptr);
      const std::string y = resolved_yaml(a);
      const TrainConfig b = load_train_config(write_yaml("tc_rt", y), {}, nullptr);
      CHECK(resolved_yaml(b) == y);
      CHECK(b.preset == preset);
      CHECK(b.unsup.enabled == a.unsup.enabled);
      CHECK(b.contrastive.enabled == a.contrastive.enabled);
      CHECK(b.sup_only_epoch == a.sup_only_epoch);
      CHECK(b.contrastive.num_queries == a.contrastive.num_queries);
      CHECK(b.data.train.crop.size == a.data.train.crop.size);
      CHECK(b.net.depth == a.net.depth);
    }
  CHECK(read_text(yaml_path("tc_rt")).find("queue_index_bug") != std::string::npos);
}

TEST_CASE("train config: YAML text loads as its file does, and errors name the text's name") {
  const std::vector<std::string> ov{"trainer.preset=official", "trainer.contrastive.num_queries=8"};
  const TrainConfig f = load_text("tc_txt", kBase, ov);
  const TrainConfig t = load_train_config_text(kBase, "the recipe", ov, nullptr);
  CHECK(resolved_yaml(t) == resolved_yaml(f));
  CHECK(t.file == "the recipe");
  CHECK(error_of([] { load_train_config_text("trainer: [1, 2", "the recipe", {}, nullptr); })
            .find("the recipe:") == 0);
  const std::string unknown = error_of([] { load_train_config_text(kBase, "the recipe", {"net.bogus=1"}, nullptr); });
  CHECK(unknown.find("bogus") != std::string::npos);
  CHECK(unknown.find("command line") != std::string::npos);
}

TEST_CASE("train config: the ablation switches are keys of their own, checked, logged and round-tripped") {
  const TrainConfig d = load_text("tc_abl0", kBase);
  CHECK(d.unsup.dpa);
  CHECK(d.contrastive.memory_bank);
  CHECK(d.contrastive.prt);
  CHECK(d.contrastive.negative_source == NegativeSource::Unreliable);
  const std::vector<std::string> ov{"trainer.unsupervised.dpa=False", "trainer.contrastive.memory_bank=False",
                                    "trainer.contrastive.prt=False", "trainer.contrastive.negative_source=reliable"};
  std::vector<std::string> log;
  const TrainConfig c = load_text("tc_abl1", kBase, ov, &log);
  CHECK(!c.unsup.dpa);
  const ContrastiveParams p = c.contrastive_params();
  CHECK(!p.memory_bank);
  CHECK(!p.prt);
  CHECK(p.negative_source == NegativeSource::Reliable);
  CHECK(logged(log, "trainer.unsupervised.dpa = False (command line; preset paper: True)"));
  CHECK(logged(log, "trainer.contrastive.memory_bank = False (command line; preset paper: True)"));
  CHECK(logged(log, "trainer.contrastive.prt = False (command line; preset paper: True)"));
  CHECK(logged(log, "trainer.contrastive.negative_source = reliable (command line; preset paper: unreliable)"));
  // the same keys in the file; the official preset has the same defaults
  log.clear();
  const std::string f =
      replace_once(kBase, "    temperature: 0.5\n", "    temperature: 0.5\n    negative_source: all\n");
  const TrainConfig a = load_text("tc_abl2", f, {"trainer.preset=official"}, &log);
  CHECK(a.contrastive_params().negative_source == NegativeSource::All);
  CHECK(logged(log, "trainer.contrastive.negative_source = all (file; preset official: unreliable)"));
  CHECK(!logged(log, "trainer.contrastive.prt ="));
  // round trip
  const std::string y = resolved_yaml(c);
  const TrainConfig b = load_train_config(write_yaml("tc_abl_rt", y), {}, nullptr);
  CHECK(resolved_yaml(b) == y);
  CHECK(!b.unsup.dpa);
  CHECK(!b.contrastive.memory_bank);
  CHECK(!b.contrastive.prt);
  CHECK(b.contrastive.negative_source == NegativeSource::Reliable);
  // bad values name the key
  CHECK(error_of([&] { load_text("tc_abl3", kBase, {"trainer.contrastive.negative_source=high"}); })
            .find("trainer.contrastive.negative_source: expected unreliable | reliable | all, got 'high'") !=
        std::string::npos);
  for (const char* bad : {"trainer.contrastive.memory_bank=maybe", "trainer.contrastive.prt=2",
                          "trainer.unsupervised.dpa=[True]"}) {
    const std::string key = std::string(bad).substr(0, std::string(bad).find('='));
    const std::string e = error_of([&] { load_text("tc_abl4", kBase, {bad}); });
    CHECK_MESSAGE(e.find(key + ": expected") != std::string::npos, e);
  }
  // alone, our keys do not switch a loss on
  const std::string no_unsup = replace_once(kBase, "    drop_percent: 80\n    apply_aug: cutmix\n", "    dpa: False\n");
  const std::string ours =
      replace_once(no_unsup, "    low_rank: 3\n    high_rank: 20\n    temperature: 0.5\n", "    prt: False\n");
  const TrainConfig o = load_text("tc_abl5", ours);
  CHECK(!o.unsup.enabled);
  CHECK(!o.contrastive.enabled);
  CHECK(!o.unsup.dpa);
  CHECK(!o.contrastive.prt);
}

TEST_CASE("train config: replicas fix the global batch and the official contrastive weight") {
  const TrainConfig one = load_text("tc_rep0", kBase);
  CHECK(one.replicas == 1);
  CHECK(one.global_batch() == one.data.batch_size);
  std::vector<std::string> log;
  const TrainConfig four = load_text("tc_rep1", kBase, {"trainer.replicas=4"}, &log);
  CHECK(four.replicas == 4);
  CHECK(four.global_batch() == 4 * four.data.batch_size);
  CHECK(logged(log, "trainer.replicas = 4 (command line; preset paper: 1)"));
  CHECK(!four.switches.divide_by_replicas);
  CHECK(four.contrastive_weight() == doctest::Approx(0.1));
  const TrainConfig off = load_text("tc_rep2", kBase, {"trainer.replicas=4", "trainer.preset=official"});
  CHECK(off.switches.divide_by_replicas);  // λc = 1 / R, as the public all-reduce / world size
  CHECK(off.contrastive_weight() == 0.25);
  const TrainConfig sw = load_text("tc_rep3", kBase, {"trainer.replicas=4", "trainer.preset=official",
                                                      "trainer.contrastive.divide_by_replicas=False"});
  CHECK(sw.contrastive_weight() == 1.0);
  const std::string y = resolved_yaml(off);
  CHECK(y.find("replicas: 4") != std::string::npos);
  CHECK(resolved_yaml(load_train_config(write_yaml("tc_rep_rt", y), {}, nullptr)) == y);
  for (const char* bad : {"trainer.replicas=0", "trainer.replicas=two", "trainer.replicas=2000"}) {
    const std::string e = error_of([&] { load_text("tc_rep4", kBase, {bad}); });
    CHECK_MESSAGE(e.find("trainer.replicas: expected") != std::string::npos, e);
  }
}

TEST_CASE("train config: alpha_t decays per epoch with DPA and stays at alpha0 without") {
  const TrainConfig c =
      load_text("tc_alpha", kBase, {"trainer.epochs=80", "trainer.contrastive.low_entropy_threshold=30"});
  CHECK(c.alpha_at(20, 0) == 20.0);
  CHECK(c.alpha_at(20, 40) == 10.0);
  CHECK(c.unsup_percent_at(0) == 80.0);   // drop_percent 80: alpha0 = 20
  CHECK(c.unsup_percent_at(40) == 90.0);
  CHECK(c.unsup_percent_at(79) == 100.0 - 20.0 * (1.0 - 79.0 / 80.0));
  CHECK(c.contrastive_alpha_at(0) == 30.0);
  CHECK(c.contrastive_alpha_at(60) == 7.5);
  CHECK_THROWS_AS(c.alpha_at(20, -1), Error);
  CHECK_THROWS_AS(c.alpha_at(20, 81), Error);
  const TrainConfig f =
      load_text("tc_alpha2", kBase, {"trainer.epochs=80", "trainer.unsupervised.dpa=False"});
  for (int epoch : {0, 40, 79}) {
    CHECK(f.unsup_percent_at(epoch) == 80.0);
    CHECK(f.contrastive_alpha_at(epoch) == 20.0);
  }
}
