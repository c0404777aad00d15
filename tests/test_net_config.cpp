// The net-config reader (u2pl/net/net_config.cpp): every public U2PL config loads with the expected
// values, our own encoder keys are read, and each error path (unknown key at every level, wrong
// type, unsupported values, missing sections, malformed YAML) names the file, line and key.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "engine/check.h"
#include "tests/config_test_util.h"
#include "u2pl/net/net_config.h"

using namespace u2pl;

namespace {

using test::have_public_configs;
const std::string& kPublic = test::kPublicConfigs;

// A minimal valid config; tests replace parts of it.
const std::string kNet =
    "net:\n"
    "  num_classes: 21\n"
    "  encoder:\n"
    "    type: u2pl.models.resnet.resnet101\n"
    "    kwargs:\n"
    "      replace_stride_with_dilation: [False, True, True]\n"
    "  decoder:\n"
    "    type: u2pl.models.decoder.dec_deeplabv3_plus\n"
    "    kwargs:\n"
    "      inner_planes: 256\n";

std::string tmp_name(const std::string& name) { return test::yaml_path("net_config_" + name); }

std::string write_tmp(const std::string& name, const std::string& text) {
  return test::write_yaml("net_config_" + name, text);
}

NetConfig load_text(const std::string& name, const std::string& text,
                    std::vector<std::string>* warnings = nullptr) {
  return load_net_config(write_tmp(name, text), warnings);
}

// The message of the error that loading `text` throws ("" when it loads).
std::string error_of(const std::string& name, const std::string& text) {
  return test::error_of([&] { load_text(name, text); });
}

std::string replace(const std::string& s, const std::string& from, const std::string& to) {
  return test::replace_once(s, from, to);
}

}  // namespace

TEST_CASE("net config: every public config loads with the expected values") {
  if (!have_public_configs()) {
    MESSAGE("skipped: " << kPublic << " is absent");
    return;
  }
  for (const char* name : {"pascal_1464_ours", "pascal_1464_suponly"}) {
    CAPTURE(name);
    std::vector<std::string> warnings;
    const NetConfig c = load_net_config(kPublic + name + ".yaml", &warnings);
    CHECK(warnings.empty());
    CHECK(c.num_classes == 21);
    CHECK(c.depth == 101);
    CHECK(c.stem == "deep");
    CHECK(c.width_divisor == 1);
    CHECK(c.output_stride() == 8);
    CHECK(c.multi_grid);
    CHECK(c.zero_init_residual);
    CHECK(c.weights.empty());
    CHECK(c.inner_planes == 256);
    CHECK(c.dilations == std::vector<int>{12, 24, 36});
    CHECK(c.rep_head == (std::string(name) == "pascal_1464_ours"));
    CHECK_FALSE(c.aux);
    CHECK(c.sync_bn);
    CHECK(c.ema_decay == doctest::Approx(0.99));
    CHECK(c.mean[1] == doctest::Approx(116.28));
    CHECK(c.std[2] == doctest::Approx(57.375));
  }
  for (const char* name : {"cityscapes_744_ours", "cityscapes_744_suponly"}) {
    CAPTURE(name);
    std::vector<std::string> warnings;
    const NetConfig c = load_net_config(kPublic + name + ".yaml", &warnings);
    CHECK(warnings.empty());
    CHECK(c.num_classes == 19);
    CHECK(c.depth == 101);
    CHECK(c.output_stride() == 8);
    CHECK(c.rep_head == (std::string(name) == "cityscapes_744_ours"));
    CHECK(c.aux);
    CHECK(c.aux_plane == 1024);
    CHECK(c.aux_weight == doctest::Approx(0.4));
  }
}

TEST_CASE("net config: our encoder keys, output stride 16, normalisation, defaults") {
  std::string text = replace(kNet, "[False, True, True]", "[False, False, True]\n"
                                                          "      stem: standard\n"
                                                          "      width_divisor: 16\n"
                                                          "      weights: /data/resnet18.safetensors");
  text = replace(text, "resnet101", "resnet18");
  text = "dataset:\n  type: pascal\n  mean: [1, 2, 3.5]\n  std: [4, 5, 6]\n" + text;
  const NetConfig c = load_text("ours", text);
  CHECK(c.depth == 18);
  CHECK(c.stem == "standard");
  CHECK(c.width_divisor == 16);
  CHECK(c.weights == "/data/resnet18.safetensors");
  CHECK(c.output_stride() == 16);
  CHECK(c.mean == std::array<float, 3>{1, 2, 3.5f});
  CHECK(c.std == std::array<float, 3>{4, 5, 6});
  CHECK(c.rep_head);  // the public decoder's default
  CHECK_FALSE(c.aux);

  // aux_plane as written differs from resnet18's layer3 (256 / 16): a warning, not an error.
  std::vector<std::string> warnings;
  const NetConfig a = load_text("aux_warn", text + "  aux_loss:\n    aux_plane: 1024\n    loss_weight: 0.4\n",
                                &warnings);
  CHECK(a.aux);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0].find("net.aux_loss.aux_plane") != std::string::npos);
  CHECK(warnings[0].find("uses 16") != std::string::npos);
}

TEST_CASE("net config: unknown keys are errors naming the dotted key, file and line") {
  struct Case {
    const char* name;
    std::string text;
    const char* key;
  };
  const std::vector<Case> cases = {
      {"top", kNet + "extra: 1\n", "extra: unknown key"},
      {"net", kNet + "  num_class: 21\n", "net.num_class: unknown key"},
      {"encoder", replace(kNet, "    kwargs:\n      replace", "    weights: x\n    kwargs:\n      replace"),
       "net.encoder.weights: unknown key"},
      {"enc_kwargs", replace(kNet, "      replace", "      multigrid: True\n      replace"),
       "net.encoder.kwargs.multigrid: unknown key"},
      {"decoder", kNet + "    num_classes: 21\n", "net.decoder.num_classes: unknown key"},
      {"dec_kwargs", kNet + "      low_conv_planes: 256\n", "net.decoder.kwargs.low_conv_planes: unknown key"},
      {"aux", kNet + "  aux_loss:\n    aux_plane: 1024\n    loss_weight: 0.4\n    weight: 1\n",
       "net.aux_loss.weight: unknown key"},
      {"duplicate", kNet + "  num_classes: 19\n", "net.num_classes: duplicate key"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string msg = error_of(c.name, c.text);
    CHECK_MESSAGE(msg.find(c.key) != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(tmp_name(c.name) + ":") == 0, msg);
  }
  // The line is the offending key's (1-based).
  CHECK(error_of("line", kNet + "  num_class: 21\n").find(".yaml:11: net.num_class") != std::string::npos);
}

TEST_CASE("net config: wrong types and unsupported values are errors saying what was expected") {
  struct Case {
    const char* name;
    std::string text;
    const char* want;
  };
  const std::vector<Case> cases = {
      {"int", replace(kNet, "num_classes: 21", "num_classes: abc"),
       "net.num_classes: expected an integer, got 'abc'"},
      {"quoted", replace(kNet, "num_classes: 21", "num_classes: \"21\""),
       "net.num_classes: expected an integer, got the string '21'"},
      {"one_class", replace(kNet, "num_classes: 21", "num_classes: 1"),
       "net.num_classes: expected an integer >= 2, got 1"},
      {"bool", kNet + "  sync_bn: maybe\n", "net.sync_bn: expected a boolean"},
      {"ema", kNet + "  ema_decay: 1.5\n", "net.ema_decay: expected a number in [0, 1], got 1.5"},
      {"list", replace(kNet, "[False, True, True]", "[False, True]"),
       "net.encoder.kwargs.replace_stride_with_dilation: expected a list of 3 booleans, got 2 items"},
      {"list_item", replace(kNet, "[False, True, True]", "[False, 1.5, True]"),
       "net.encoder.kwargs.replace_stride_with_dilation[1]: expected a boolean"},
      {"os32", replace(kNet, "[False, True, True]", "[False, False, False]"),
       "net.encoder.kwargs.replace_stride_with_dilation: unsupported value (supported: [False, True, "
       "True] for output stride 8, [False, False, True] for output stride 16)"},
      {"os4", replace(kNet, "[False, True, True]", "[True, True, True]"), "unsupported value"},
      {"encoder", replace(kNet, "resnet101", "resnet200"),
       "net.encoder.type: unsupported encoder 'u2pl.models.resnet.resnet200'"},
      {"decoder", replace(kNet, "dec_deeplabv3_plus", "dec_deeplabv3"),
       "net.decoder.type: unsupported decoder 'u2pl.models.decoder.dec_deeplabv3'"},
      {"no_type", replace(kNet, "    type: u2pl.models.resnet.resnet101\n", ""), "net.encoder.type: missing"},
      {"stem", replace(kNet, "      replace", "      stem: tiny\n      replace"),
       "net.encoder.kwargs.stem: expected 'deep' or 'standard', got 'tiny'"},
      {"divisor", replace(kNet, "      replace", "      width_divisor: 3\n      replace"),
       "net.encoder.kwargs.width_divisor: expected a divisor of 64"},
      {"dilations", kNet + "      dilations: [12, 0, 36]\n",
       "net.decoder.kwargs.dilations[1]: expected an integer >= 1, got 0"},
      {"inner", replace(kNet, "inner_planes: 256", "inner_planes: [256]"),
       "net.decoder.kwargs.inner_planes: expected an integer, got a list"},
      {"kwargs_map", replace(kNet, "    kwargs:\n      inner_planes: 256\n", "    kwargs: 3\n"),
       "net.decoder.kwargs: expected a map, got '3'"},
      {"aux_missing", kNet + "  aux_loss:\n    aux_plane: 1024\n", "net.aux_loss.loss_weight: missing"},
      {"std", "dataset:\n  std: [1, 0, 1]\n" + kNet, "dataset.std[1]: expected a number > 0"},
      {"mean", "dataset:\n  mean: [1, 2]\n" + kNet, "dataset.mean: expected a list of 3 numbers"},
      {"no_classes", replace(kNet, "  num_classes: 21\n", ""), "net.num_classes: missing"},
      {"no_net", "trainer:\n  epochs: 1\n", "net: missing"},
      {"empty", "", "expected a map, got nothing"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const std::string msg = error_of(c.name, c.text);
    CHECK_MESSAGE(msg.find(c.want) != std::string::npos, msg);
    CHECK_MESSAGE(msg.find(tmp_name(c.name) + ":") == 0, msg);
  }
}

TEST_CASE("net config: other sections are accepted untouched") {
  const NetConfig c = load_text("sections", "trainer:\n  anything: [1, 2]\nsaver:\n  x: 1\ncriterion:\n"
                                            "  type: ohem\ndataset:\n  noise_std: 0.1\n" + kNet);
  CHECK(c.num_classes == 21);
}

TEST_CASE("net config: unreadable files and malformed YAML name the file (and the line)") {
  const std::string missing = "/tmp/u2pl_test_net_config_does_not_exist.yaml";
  std::string msg;
  try {
    load_net_config(missing);
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK_MESSAGE(msg.find(missing + ": cannot open") == 0, msg);
  msg = "";
  try {
    load_net_config("/tmp");
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK_MESSAGE(msg.find("/tmp: cannot read") == 0, msg);

  msg = error_of("malformed", kNet + "  aux_loss: [1, 2\n");
  CHECK_MESSAGE(msg.find("malformed YAML") != std::string::npos, msg);
  CHECK_MESSAGE(msg.find(tmp_name("malformed") + ":") == 0, msg);
  msg = error_of("malformed_line", "net:\n  num_classes: 21\n   bad: 1\n");
  CHECK_MESSAGE(msg.find(".yaml:3:") != std::string::npos, msg);
}
