// The network part of a U2PL config.yaml: the public `net` section (encoder/decoder type strings
// and kwargs, num_classes, aux_loss, ...) plus `dataset.mean` / `dataset.std`, and our own keys
// in the same tree (SPEC §8). Strict in the sections it reads: unknown keys are errors naming the
// key; keys the public code never reads are warnings. Covered by tests/test_net_config.cpp.
#pragma once
#include <array>
#include <string>
#include <vector>

namespace YAML {
class Node;
}

namespace u2pl {

struct NetConfig {
  int num_classes = 21;
  // encoder: u2pl.models.resnet.resnet{18,34,50,101,152}
  int depth = 101;
  std::string stem = "deep";  // "deep" (public U2PL backbone) | "standard" (torchvision 7x7)
  int width_divisor = 1;      // base width 64 / divisor (small CPU runs)
  std::array<bool, 3> replace_stride_with_dilation{false, true, true};  // layer2..layer4
  bool multi_grid = true;
  bool zero_init_residual = true;
  std::string weights;  // net.encoder.kwargs.weights: ImageNet backbone (safetensors), optional
  // decoder: u2pl.models.decoder.dec_deeplabv3_plus
  int inner_planes = 256;
  std::vector<int> dilations{12, 24, 36};
  bool rep_head = true;
  int low_conv_planes = 256;  // not in the public kwargs; fixed by the public decoder
  // aux_loss (Cityscapes): presence enables the aux head
  bool aux = false;
  int aux_plane = 1024;       // as written in the config; the head uses layer3's real width
  float aux_weight = 0.4f;
  // net-level keys the trainer reads later
  float ema_decay = 0.99f;
  bool sync_bn = true;
  // dataset normalisation (RGB, 0-255)
  std::array<float, 3> mean{123.675f, 116.28f, 103.53f};
  std::array<float, 3> std{58.395f, 57.12f, 57.375f};

  int output_stride() const;  // 8 or 16 (from replace_stride_with_dilation)
};

// Reads the net section (and dataset.mean/std) of a parsed config; `file` names the source in
// errors. Warnings (known-unused keys) are appended to `warnings` when given.
NetConfig parse_net_config(const YAML::Node& root, const std::string& file,
                           std::vector<std::string>* warnings = nullptr);
NetConfig load_net_config(const std::string& path, std::vector<std::string>* warnings = nullptr);

}  // namespace u2pl
