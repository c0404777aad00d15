// The layer benchmark behind `u2pl_bench layers`: every distinct conv, BN, bilinear resize and
// max-pool shape of DeepLabv3+ on a deep-stem ResNet-101 (SPEC §1, output stride 8), timed forward
// and backward. bench/layers_torch.py times the same rows with PyTorch; bench/compare.py compares.
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "layers/conv2d.h"
#include "layers/pool.h"

namespace u2pl::bench {

enum class OpKind { Conv, BatchNorm, Bilinear, MaxPool };
const char* op_kind_name(OpKind k);  // "conv", "bn", "bilinear", "maxpool"

// One benchmark row: a shape and how often the network uses it.
struct BenchOp {
  std::string name;  // state-dict module of the first use, e.g. "encoder.layer3.1.conv2"
  OpKind kind = OpKind::Conv;
  Shape x;           // input (N,C,H,W)
  Shape y;           // output (N,C',OH,OW)
  Conv2dSpec conv;   // Conv only
  MaxPoolSpec pool;  // MaxPool only
  int count = 1;     // uses in one forward pass of the network
};

// The ops of the student network (backbone, ASPP, head, classifier and representation heads) on a
// (batch, 3, crop, crop) input, in network order, merged by shape; names come from the first use.
std::vector<BenchOp> network_layer_ops(int crop, int batch);

double conv_gflop(const BenchOp& op);  // forward: 2*N*Cout*OH*OW*Cin*kh*kw / 1e9; 0 if not a conv
std::string shape_text(const BenchOp& op);  // "2x2048x65x65 k3 s1 p12 d12 -> 256x65x65"

struct Timing {
  double fwd_ms = 0, bwd_ms = 0;  // medians of `repeat` runs after one warm-up
};
// Times op on ctx's device with random inputs; the backward computes dx (beta 0) and the
// parameter gradients, as training does.
Timing time_op(Context& ctx, const BenchOp& op, int repeat);

struct BenchRow {
  BenchOp op;
  Timing t;
};
void print_table(std::ostream& os, const std::vector<BenchRow>& rows);
// A list of {name, kind, shape fields, count, fwd_ms, bwd_ms, gflops_fwd (null if not a conv)}.
nlohmann::json rows_json(const std::vector<BenchRow>& rows);

}  // namespace u2pl::bench
