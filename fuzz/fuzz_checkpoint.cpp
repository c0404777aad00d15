// Fuzzes the checkpoint loader (u2pl/train/checkpoint.h) on top of the safetensors reader: a
// training checkpoint of a tiny network (ResNet-18 at width/64, 2 classes, with teacher and memory
// bank) either restores or throws u2pl::Error, and what restores names a model to evaluate and
// fills no queue beyond its capacity. Anything else is a finding. With U2PL_FUZZ_WRITE_SEED=FILE
// the libFuzzer binary writes a valid checkpoint of these networks to FILE and exits: that is how
// fuzz/corpus/checkpoint/ was made.
#include <cstdlib>
#include <memory>

#include "engine/check.h"
#include "fuzz/fuzz_util.h"
#include "u2pl/train/checkpoint.h"

namespace {

struct Nets {
  std::unique_ptr<u2pl::U2plNet> student, teacher;
  std::unique_ptr<u2pl::Tensor> momentum;
  std::unique_ptr<u2pl::MemoryBank> bank;
};

Nets& nets() {
  static Nets n = [] {
    u2pl::NetConfig c;
    c.num_classes = 2;
    c.depth = 18;
    c.width_divisor = 64;
    c.inner_planes = 2;
    c.dilations = {1, 2, 3};
    c.multi_grid = false;
    Nets r;
    r.student = std::make_unique<u2pl::U2plNet>(c);
    r.student->allocate(u2pl::Device::CPU, 1, true);
    r.teacher = std::make_unique<u2pl::U2plNet>(c);
    r.teacher->allocate(u2pl::Device::CPU, 2, false);
    r.momentum = std::make_unique<u2pl::Tensor>(u2pl::Shape{r.student->params().values().floats()}, u2pl::Device::CPU);
    const int rep = r.student->params().find("decoder.representation.8.weight");
    r.bank = std::make_unique<u2pl::MemoryBank>(std::vector<int64_t>{3, 2}, r.student->params().value(rep).shape[0]);
    return r;
  }();
  return n;
}

}  // namespace

#ifdef U2PL_LIBFUZZER
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  Nets& n = nets();
  if (const char* seed = std::getenv("U2PL_FUZZ_WRITE_SEED")) {
    u2pl::fill_zero(n.momentum->view());
    const std::vector<float> row(static_cast<size_t>(n.bank->dim()), 0.5f);
    n.bank->push(0, row.data(), 1);
    n.bank->push(1, row.data(), 1);
    u2pl::CheckpointState st;
    st.iter = 7;
    st.best_miou = 0.25;
    st.best_iter = 4;
    st.eval_model = "teacher";
    st.seed = 3;
    st.config_yaml = "trainer: {epochs: 2}\n";
    u2pl::save_checkpoint(seed, st, *n.student, n.teacher.get(), n.momentum->view(), n.bank.get());
    std::exit(0);
  }
  return 0;
}
#endif

namespace u2pl::fuzz {

bool checkpoint(const uint8_t* data, size_t size) {
  const std::string path = write_input("ckpt.safetensors", data, size);
  Nets& n = nets();
  try {
    const u2pl::LoadedCheckpoint lc = u2pl::load_checkpoint(path, *n.student, n.teacher.get(), n.momentum->view(),
                                                            n.bank.get());
    if (lc.state.eval_model != "teacher" && lc.state.eval_model != "student")
      violated("a checkpoint loaded with eval_model '" + lc.state.eval_model + "'");
    for (int c = 0; c < n.bank->classes(); ++c)
      if (n.bank->size(c) < 0 || n.bank->size(c) > n.bank->capacity(c)) violated("bank queue size");
  } catch (const u2pl::Error&) {
    return false;
  }
  return true;
}

}  // namespace u2pl::fuzz

U2PL_FUZZ_TARGET(checkpoint)
