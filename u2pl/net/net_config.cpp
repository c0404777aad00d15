// Reads the network part of a U2PL config.yaml (net, dataset.mean/std) strictly, through the shared
// layer data/yaml_section.h: unknown or duplicate keys, wrong types and unsupported values are errors
// naming the file, the line and the dotted key (STYLE 18, SPEC §8). The keys are those that the public
// ModelBuilder (u2pl/models/model_helper.py), resnet*() and dec_deeplabv3_plus read, plus our encoder
// keys. Covered by tests/test_net_config.cpp.
#include "u2pl/net/net_config.h"

#include <limits>
#include <sstream>

#include "data/yaml_section.h"
#include "engine/check.h"

namespace u2pl {
namespace {

using YAML::Node;

const char kResnetType[] = "u2pl.models.resnet.resnet";  // + depth
const char kDecoderType[] = "u2pl.models.decoder.dec_deeplabv3_plus";

void read_encoder(const Section& net, NetConfig& c) {
  net.need("encoder");
  const Section enc = net.child("encoder", {"type", "kwargs"});
  enc.need("type");
  std::string type;
  enc.get("type", type);
  c.depth = 0;
  for (int d : {18, 34, 50, 101, 152})
    if (type == kResnetType + std::to_string(d)) c.depth = d;
  if (c.depth == 0)
    enc.fail_at("type", "unsupported encoder '" + type + "' (expected " + kResnetType +
                            "18, 34, 50, 101 or 152)");
  if (!enc.has("kwargs")) return;
  const Section kw = enc.child("kwargs", {"multi_grid", "zero_init_residual", "fpn",
                                          "replace_stride_with_dilation", "stem", "width_divisor",
                                          "weights"});
  kw.get("multi_grid", c.multi_grid);
  kw.get("zero_init_residual", c.zero_init_residual);
  // Public: with fpn the encoder returns all four layers; ours always does, so only its type matters.
  bool fpn = true;
  kw.get("fpn", fpn);
  if (kw.has("replace_stride_with_dilation")) {
    const auto items = kw.list("replace_stride_with_dilation", 3, "booleans");
    std::array<bool, 3> r{};
    for (size_t i = 0; i < 3; ++i) r[i] = to_bool(kw.file(), items[i].first, items[i].second);
    if (r[0] || !r[2])
      kw.fail_at("replace_stride_with_dilation",
                 "unsupported value (supported: [False, True, True] for output stride 8, "
                 "[False, False, True] for output stride 16)");
    c.replace_stride_with_dilation = r;
  }
  kw.get("stem", c.stem);
  if (c.stem != "deep" && c.stem != "standard")
    kw.fail_at("stem", "expected 'deep' or 'standard', got '" + c.stem + "'");
  kw.get("width_divisor", c.width_divisor, 1);
  if (64 % c.width_divisor != 0)
    kw.fail_at("width_divisor", "expected a divisor of 64 (the base width), got " +
                                    std::to_string(c.width_divisor));
  kw.get("weights", c.weights);
}

void read_decoder(const Section& net, NetConfig& c) {
  net.need("decoder");
  const Section dec = net.child("decoder", {"type", "kwargs"});
  dec.need("type");
  std::string type;
  dec.get("type", type);
  if (type != kDecoderType)
    dec.fail_at("type", "unsupported decoder '" + type + "' (expected " + kDecoderType + ")");
  if (!dec.has("kwargs")) return;
  const Section kw = dec.child("kwargs", {"inner_planes", "dilations", "rep_head"});
  kw.get("inner_planes", c.inner_planes, 1);
  if (kw.has("dilations")) {
    c.dilations.clear();
    for (const auto& item : kw.list("dilations", 3, "positive integers"))
      c.dilations.push_back(to_int(kw.file(), item.first, item.second, 1));
  }
  kw.get("rep_head", c.rep_head);
}

// Presence enables the aux head (public: `net_cfg.get("aux_loss", False)`); both keys are read
// by the public code unconditionally, so both are required.
void read_aux(const Section& net, NetConfig& c, std::vector<std::string>* warnings) {
  if (!net.has("aux_loss")) return;
  const Section aux = net.child("aux_loss", {"aux_plane", "loss_weight"});
  aux.need("aux_plane");
  aux.need("loss_weight");
  aux.get("aux_plane", c.aux_plane, 1);
  aux.get("loss_weight", c.aux_weight, 0.0, std::numeric_limits<double>::infinity());
  c.aux = true;
  // layer3 is 256 planes × expansion (4 for Bottleneck, 1 for BasicBlock) at base width 64.
  const int layer3 = (c.depth >= 50 ? 1024 : 256) / c.width_divisor;
  if (warnings && c.aux_plane != layer3) {
    std::ostringstream os;
    os << aux.file() << ":" << aux.at("aux_plane").Mark().line + 1 << ": " << aux.key_of("aux_plane")
       << ": " << c.aux_plane << " is not layer3's width for resnet" << c.depth << " / width_divisor "
       << c.width_divisor << "; the aux head uses " << layer3;
    warnings->push_back(os.str());
  }
}

}  // namespace

int NetConfig::output_stride() const {
  const auto& r = replace_stride_with_dilation;
  U2PL_CHECK(!r[0] && r[2], "replace_stride_with_dilation must be [False, True, True] (output stride 8) "
                            "or [False, False, True] (output stride 16)");
  return r[1] ? 8 : 16;
}

NetConfig parse_net_config(const Node& root, const std::string& file, std::vector<std::string>* warnings) {
  // trainer, saver, criterion and the rest of dataset belong to the training reader.
  const Section top(file, root, "");
  top.known({"dataset", "trainer", "saver", "criterion", "net"});
  NetConfig c;
  if (top.has("dataset")) {  // mean, std (RGB, 0-255); the rest of `dataset` belongs to the data reader
    const Section ds(file, top.at("dataset"), "dataset");
    ds.get("mean", c.mean, false);
    ds.get("std", c.std, true);
  }
  top.need("net");
  const Section net = top.child("net", {"num_classes", "sync_bn", "ema_decay", "encoder", "decoder", "aux_loss"});
  net.need("num_classes");
  net.get("num_classes", c.num_classes, 2);
  net.get("sync_bn", c.sync_bn);
  net.get("ema_decay", c.ema_decay, 0.0, 1.0);
  read_encoder(net, c);
  read_decoder(net, c);
  read_aux(net, c, warnings);
  return c;
}

NetConfig load_net_config(const std::string& path, std::vector<std::string>* warnings) {
  return parse_net_config(load_yaml_file(path), path, warnings);
}

}  // namespace u2pl
