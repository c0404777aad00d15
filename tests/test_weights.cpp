// Weight I/O (u2pl/net/weights.h) and the PyTorch converter (weights/convert.py): round trips,
// scope resolution, the one error listing every problem, truncated files, and conversions of random
// checkpoints in the torchvision, U2PL-backbone and U2PL-checkpoint layouts. The converter cases
// need /usr/bin/python3 with torch and report themselves skipped without it.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/safetensors.h"
#include "u2pl/net/weights.h"

using namespace u2pl;
namespace fs = std::filesystem;

namespace {

// A scratch folder per process, so concurrent test runs do not share files; removed at exit.
struct ScratchDir {
  fs::path dir = fs::temp_directory_path() / ("u2pl_test_weights_" + std::to_string(getpid()));
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
std::string scratch(const std::string& name) {
  static const ScratchDir s;
  fs::create_directories(s.dir);
  return (s.dir / name).string();
}

// Two encoder tensors and their BN, plus a decoder head: enough for every scope rule.
void declare_small(ParamSet& ps) {
  ps.declare("encoder.conv1.weight", Shape{4, 3, 3, 3}, Init::KaimingNormalFanOut);
  ps.declare("encoder.bn1.weight", Shape{4}, Init::Uniform, 0, 1.f);
  ps.declare("encoder.bn1.bias", Shape{4}, Init::Uniform, 0, 1.f);
  ps.declare_buffer("encoder.bn1.running_mean", Shape{4}, Init::Zeros);
  ps.declare_buffer("encoder.bn1.running_var", Shape{4}, Init::Ones);
  ps.declare("decoder.classifier.weight", Shape{2, 4, 1, 1}, Init::Uniform, 1, 0.5f);
  ps.declare("decoder.classifier.bias", Shape{2}, Init::Uniform, 1, 0.5f);
}

// values: a seeded draw, with the buffers made non-trivial too.
void fill_small(ParamSet& ps, uint64_t seed) {
  ps.allocate(Device::CPU);
  ps.initialize(seed);
  std::vector<float> mean{0.1f, -0.2f, 0.3f, float(seed)};
  copy_tensor(ps.value(ps.find("encoder.bn1.running_mean")), TensorView(mean.data(), Shape{4}, Device::CPU));
}

std::vector<float> values(const ParamSet& ps, const std::string& name) {
  return to_host(ps.value(ps.find(name)));
}

std::string load_error(ParamSet& ps, const std::string& path, WeightScope scope) {
  try {
    load_weights(ps, path, scope);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("weights: save and load round trip with metadata") {
  ParamSet a, b;
  declare_small(a);
  declare_small(b);
  fill_small(a, 1);
  fill_small(b, 2);
  const std::string p = scratch("roundtrip.safetensors");
  save_weights(a, p, {{"source", "unit-test"}, {"note", "x"}});
  CHECK(SafeTensorsFile(p).meta("note") == "x");
  const WeightReport r = load_weights(b, p);
  CHECK(r.scope == WeightScope::Model);
  CHECK(r.loaded == 7);
  CHECK(r.source == "unit-test");
  for (const ParamDecl& d : a.decls()) CHECK_MESSAGE(values(a, d.name) == values(b, d.name), d.name);
  save_weights(a, p, {});
  CHECK(load_weights(b, p).source == p);  // no source metadata: the path
  CHECK(!fs::exists(p + ".tmp"));
  ParamSet unallocated;
  declare_small(unallocated);
  CHECK_THROWS_WITH_AS(load_weights(unallocated, p), doctest::Contains("not allocated"), Error);
}

TEST_CASE("weights: a backbone file fills encoder.* only, and Auto picks the scope") {
  ParamSet src, dst;
  declare_small(src);
  declare_small(dst);
  fill_small(src, 3);
  fill_small(dst, 4);
  const std::string p = scratch("backbone.safetensors");
  SafeTensorsWriter w;
  for (const ParamDecl& d : src.decls())
    if (d.name.rfind("encoder.", 0) == 0) w.add(d.name, src.value(src.find(d.name)));
  w.write(p);
  const std::vector<float> head = values(dst, "decoder.classifier.weight");
  const WeightReport r = load_weights(dst, p);
  CHECK(r.scope == WeightScope::Backbone);
  CHECK(r.loaded == 5);
  CHECK(values(dst, "encoder.conv1.weight") == values(src, "encoder.conv1.weight"));
  CHECK(values(dst, "encoder.bn1.running_mean") == values(src, "encoder.bn1.running_mean"));
  CHECK(values(dst, "decoder.classifier.weight") == head);  // left as initialised
  CHECK(load_weights(dst, p, WeightScope::Backbone).loaded == 5);
  // Model scope on a backbone file: the decoder is missing.
  const std::string e = load_error(dst, p, WeightScope::Model);
  CHECK(has(e, "missing from the file (2)"));
  CHECK(has(e, "decoder.classifier.bias"));
  // Backbone scope on a whole-model file: the decoder tensors are unexpected there.
  const std::string full = scratch("full.safetensors");
  save_weights(src, full, {});
  CHECK(load_weights(dst, full).scope == WeightScope::Model);
  const std::string e2 = load_error(dst, full, WeightScope::Backbone);
  CHECK(has(e2, "unexpected in the file (2)"));
  CHECK(has(e2, "decoder.classifier.weight  (outside the backbone scope)"));
}

TEST_CASE("weights: one error lists every missing, unexpected, mis-shaped and wrong-dtype tensor") {
  ParamSet ps;
  declare_small(ps);
  fill_small(ps, 5);
  const std::string p = scratch("bad.safetensors");
  SafeTensorsWriter w;
  const std::vector<float> f(200, 0.5f);
  const std::vector<double> d(4, 1.0);
  const int64_t counter = 3;
  w.add("encoder.conv1.weight", DType::F32, {4, 3, 1, 1}, f.data());        // mis-shaped
  w.add("encoder.bn1.weight", DType::F32, {4}, f.data());                   // fine
  w.add("encoder.bn1.running_mean", DType::F32, {4}, f.data());             // fine
  w.add("encoder.bn1.running_var", DType::F64, {4}, d.data());              // wrong dtype
  w.add("encoder.bn1.num_batches_tracked", DType::I64, {}, &counter);       // unexpected (PyTorch)
  w.add("decoder.classifier.weight", DType::F32, {2, 4, 1, 1}, f.data());   // fine
  w.add("decoder.classifier.bias", DType::F32, {2}, f.data());              // fine
  w.add("decoder.extra.weight", DType::F32, {3}, f.data());                 // unexpected
  w.write(p);                                                               // encoder.bn1.bias: missing
  std::vector<std::vector<float>> before;
  for (const ParamDecl& x : ps.decls()) before.push_back(values(ps, x.name));
  const std::string e = load_error(ps, p, WeightScope::Auto);
  INFO(e);
  CHECK(has(e, p));
  CHECK(has(e, "model scope"));
  CHECK(has(e, "missing from the file (1):\n    encoder.bn1.bias"));
  CHECK(has(e, "unexpected in the file (2)"));
  CHECK(has(e, "decoder.extra.weight"));
  CHECK(has(e, "encoder.bn1.num_batches_tracked  (a PyTorch BN counter"));
  CHECK(has(e, "mis-shaped (1):\n    encoder.conv1.weight: file (4, 3, 1, 1), model (4, 3, 3, 3)"));
  CHECK(has(e, "wrong dtype (1):\n    encoder.bn1.running_var: F64, expected F32"));
  for (size_t i = 0; i < ps.decls().size(); ++i)  // nothing was copied
    CHECK_MESSAGE(values(ps, ps.decls()[i].name) == before[i], ps.decls()[i].name);
}

TEST_CASE("weights: long listings are capped with a count of the rest") {
  ParamSet ps;
  for (int i = 0; i < 25; ++i) ps.declare("encoder.p" + std::to_string(i), Shape{1}, Init::Zeros);
  ps.allocate(Device::CPU);
  const std::string p = scratch("cap.safetensors");
  const float one = 1.f;
  SafeTensorsWriter w;
  w.add("encoder.p0", DType::F32, {1}, &one);
  w.write(p);
  const std::string e = load_error(ps, p, WeightScope::Model);
  CHECK(has(e, "missing from the file (24)"));
  CHECK(has(e, "... and 4 more"));
}

TEST_CASE("weights: a truncated file gives a clear error") {
  ParamSet ps;
  declare_small(ps);
  fill_small(ps, 6);
  const std::string p = scratch("truncated.safetensors");
  save_weights(ps, p, {{"source", "x"}});
  fs::resize_file(p, fs::file_size(p) - 10);
  const std::string e = load_error(ps, p, WeightScope::Auto);
  CHECK(has(e, p));
  CHECK(has(e, "truncated"));
  fs::resize_file(p, 5);
  CHECK(has(load_error(ps, p, WeightScope::Auto), "not a safetensors file"));
}

// ---- weights/convert.py -------------------------------------------------------------------

namespace {

// Random checkpoints with the public key layouts and tiny widths (the converter reads names, not
// widths), plus, per case, every engine key with its shape and values for the C++ side.
const char* kGenerator = R"PY(
import json, sys, torch
out = sys.argv[1]
torch.manual_seed(0)
W, I, C = 2, 4, 3  # backbone base width, decoder width, classes

def bn(sd, p, c):
    sd[p + ".weight"], sd[p + ".bias"] = torch.rand(c) + 0.5, torch.randn(c)
    sd[p + ".running_mean"], sd[p + ".running_var"] = torch.randn(c), torch.rand(c) + 0.5
    sd[p + ".num_batches_tracked"] = torch.tensor(7)

def conv(sd, p, o, i, k, bias=False):
    sd[p + ".weight"] = torch.randn(o, i, k, k)
    if bias:
        sd[p + ".bias"] = torch.randn(o)

def resnet(stem, blocks):
    sd = {}
    if stem == "standard":
        conv(sd, "conv1", W, 3, 7); bn(sd, "bn1", W); c = W
    else:
        conv(sd, "conv1.0", W, 3, 3); bn(sd, "conv1.1", W); conv(sd, "conv1.3", W, W, 3)
        bn(sd, "conv1.4", W); conv(sd, "conv1.6", 2 * W, W, 3); bn(sd, "bn1", 2 * W); c = 2 * W
    for k, n in enumerate(blocks):
        q = W << k
        for i in range(n):
            p = "layer%d.%d" % (k + 1, i)
            conv(sd, p + ".conv1", q, c, 1); bn(sd, p + ".bn1", q)
            conv(sd, p + ".conv2", q, q, 3); bn(sd, p + ".bn2", q)
            conv(sd, p + ".conv3", 4 * q, q, 1); bn(sd, p + ".bn3", 4 * q)
            if i == 0:
                conv(sd, p + ".downsample.0", 4 * q, c, 1); bn(sd, p + ".downsample.1", 4 * q)
            c = 4 * q
    return sd, c

def imagenet(stem, blocks):
    sd, c = resnet(stem, blocks)
    sd["fc.weight"], sd["fc.bias"] = torch.randn(10, c), torch.randn(10)
    return sd

def model():
    enc, c = resnet("deep", (3, 4, 6, 3))
    d, a = {}, {}
    conv(d, "low_conv.0", I, 4 * W, 1, True); bn(d, "low_conv.1", I)
    conv(d, "aspp.conv1.1", I, c, 1); bn(d, "aspp.conv1.2", I)
    for b in (2, 3, 4, 5):
        conv(d, "aspp.conv%d.0" % b, I, c, 1 if b == 2 else 3); bn(d, "aspp.conv%d.1" % b, I)
    conv(d, "head.0", I, 5 * I, 3); bn(d, "head.1", I)
    for h, o in (("classifier", C), ("representation", I)):
        conv(d, h + ".0", I, 2 * I, 3, True); bn(d, h + ".1", I)
        conv(d, h + ".4", I, I, 3, True); bn(d, h + ".5", I); conv(d, h + ".8", o, I, 1, True)
    conv(a, "aux.0", I, c // 2, 3, True); bn(a, "aux.1", I); conv(a, "aux.4", C, I, 1, True)
    sd = {"encoder." + k: v for k, v in enc.items()}
    sd.update({"decoder." + k: v for k, v in d.items()})
    sd.update({"auxor." + k: v for k, v in a.items()})
    return sd

def expect(name, sd, prefix=""):
    keep = {prefix + k: v for k, v in sd.items()
            if not k.endswith("num_batches_tracked") and not k.startswith("fc.")}
    with open("%s/%s.json" % (out, name), "w") as f:
        json.dump({k: {"shape": list(v.shape), "values": v.flatten().tolist()} for k, v in keep.items()}, f)

tv, bb = imagenet("standard", (3, 4, 6, 3)), imagenet("deep", (3, 4, 23, 3))
teacher, student = model(), model()
torch.save({"state_dict": tv}, out + "/tv.pth")
torch.save(bb, out + "/bb.pth")
torch.save({"epoch": 3, "model_state": {"module." + k: v for k, v in student.items()},
            "optimizer_state": {"state": {}}, "teacher_state": {"module." + k: v for k, v in teacher.items()},
            "best_miou": 0.5}, out + "/ckpt.pth")
torch.save(dict(tv, **{"layer1.0.extra.weight": torch.zeros(1)}), out + "/unknown.pth")
expect("tv", tv, "encoder."); expect("bb", bb, "encoder.")
expect("teacher", teacher); expect("student", student)
)PY";

// The exit status of a shell command (-1 when it did not exit normally).
int shell(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// Runs the converter with `args`, its output in `log`; returns the exit status.
int convert(const std::string& args, const std::string& log) {
  return shell("/usr/bin/python3 " U2PL_SOURCE_DIR "/weights/convert.py " + args + " >" + log + " 2>&1");
}
bool have_torch() { return shell("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0; }

// Writes the generator's checkpoints once per process; returns their folder with a trailing '/'.
std::string generated() {
  static const std::string dir = [] {
    const std::string d = fs::path(scratch("gen.py")).parent_path().string() + "/";
    std::ofstream(d + "gen.py") << kGenerator;  // written and closed before python runs
    return shell("/usr/bin/python3 " + d + "gen.py " + d) == 0 ? d : std::string();
  }();
  REQUIRE_MESSAGE(!dir.empty(), "the checkpoint generator (python snippet in this file) failed");
  return dir;
}

void convert_ok(const std::string& args, const std::string& log) {
  const int rc = convert(args, log);
  REQUIRE_MESSAGE(rc == 0, "convert.py " << args << " exited with " << rc << ":\n" << slurp(log));
}

// Declares every key of an expectation file (running statistics as buffers), loads `st` and
// compares each tensor with the values the generator wrote.
WeightReport load_expected(const std::string& json_path, const std::string& st) {
  const nlohmann::json j = nlohmann::json::parse(slurp(json_path));
  ParamSet ps;
  for (auto it = j.begin(); it != j.end(); ++it) {
    Shape s;
    for (const auto& v : (*it)["shape"]) s.d[s.ndim++] = v.get<int64_t>();
    const std::string& k = it.key();
    if (has(k, ".running_mean") || has(k, ".running_var"))
      ps.declare_buffer(k, s, Init::Zeros);
    else
      ps.declare(k, s, Init::Zeros);
  }
  ps.allocate(Device::CPU);
  const WeightReport r = load_weights(ps, st);
  CHECK(r.loaded == static_cast<int>(j.size()));
  int wrong = 0;
  for (auto it = j.begin(); it != j.end(); ++it)
    if (values(ps, it.key()) != (*it)["values"].get<std::vector<float>>()) ++wrong;
  CHECK_MESSAGE(wrong == 0, st << ": " << wrong << " tensors differ from " << json_path);
  return r;
}

}  // namespace

TEST_CASE("weights: convert.py maps torchvision, U2PL-backbone and U2PL-checkpoint files") {
  if (!have_torch()) {
    MESSAGE("skipped: /usr/bin/python3 cannot import torch");
    return;
  }
  const std::string d = generated(), log = d + "convert.log";

  convert_ok("--from torchvision " + d + "tv.pth " + d + "tv.st", log);
  CHECK(has(slurp(log), "unwrapped 'state_dict'"));
  CHECK(has(slurp(log), "fc.bias, fc.weight"));
  WeightReport r = load_expected(d + "tv.json", d + "tv.st");
  CHECK(r.scope == WeightScope::Backbone);
  CHECK(r.source == "torchvision:tv.pth");
  CHECK(SafeTensorsFile(d + "tv.st").meta("depth") == "50");
  CHECK(SafeTensorsFile(d + "tv.st").meta("stem") == "standard");

  convert_ok("--from u2pl-backbone " + d + "bb.pth " + d + "bb.st", log);
  CHECK(load_expected(d + "bb.json", d + "bb.st").scope == WeightScope::Backbone);
  CHECK(SafeTensorsFile(d + "bb.st").meta("depth") == "101");
  CHECK(SafeTensorsFile(d + "bb.st").meta("stem") == "deep");

  convert_ok("--from u2pl-checkpoint " + d + "ckpt.pth " + d + "teacher.st", log);
  r = load_expected(d + "teacher.json", d + "teacher.st");
  CHECK(r.scope == WeightScope::Model);
  CHECK(r.source == "u2pl-checkpoint:ckpt.pth:teacher");
  convert_ok("--from u2pl-checkpoint --which student " + d + "ckpt.pth " + d + "student.st", log);
  load_expected(d + "student.json", d + "student.st");

  // Back to the public layout, then in again as that file's model_state.
  convert_ok("--to u2pl-checkpoint " + d + "teacher.st " + d + "back.pth", log);
  CHECK(shell("/usr/bin/python3 -c \"import torch; s = torch.load('" + d + "back.pth')['model_state']; "
              "assert all(k.startswith('module.') for k in s); "
              "assert s['module.encoder.bn1.num_batches_tracked'].dtype == torch.int64\"") == 0);
  convert_ok("--from u2pl-checkpoint --which student " + d + "back.pth " + d + "back.st", log);
  load_expected(d + "teacher.json", d + "back.st");
}

TEST_CASE("weights: convert.py refuses layouts it does not know, leaving no output") {
  if (!have_torch()) {
    MESSAGE("skipped: /usr/bin/python3 cannot import torch");
    return;
  }
  const std::string d = generated(), log = d + "refuse.log", out = d + "refused.st";
  CHECK(convert("--from torchvision " + d + "unknown.pth " + out, log) == 2);
  CHECK(has(slurp(log), "unknown keys (1):\n    layer1.0.extra.weight"));
  CHECK(!fs::exists(out));
  CHECK(convert("--from torchvision " + d + "bb.pth " + out, log) == 2);
  CHECK(has(slurp(log), "missing expected keys"));
  CHECK(has(slurp(log), "use --from u2pl-backbone"));
  CHECK(!fs::exists(out));
  CHECK(!fs::exists(out + ".tmp"));
}
