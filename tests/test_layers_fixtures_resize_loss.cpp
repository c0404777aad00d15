// Tier 2 (STYLE 13): bilinear (align_corners=True) and nearest resize, softmax, cross-entropy
// with ignore 255 and the public code's OHEM selection against PyTorch dumps in tests/fixtures/
// (written by tools/pytorch/gen_fixtures.py). Each case holds L = Σ w·y for a stored w (a scalar
// for the losses); backward is fed dy = w.
#include <doctest/doctest.h>

#include <string>

#include "layers/loss.h"
#include "layers/resize.h"
#include "tests/test_util.h"

using namespace u2pl;
using test::Fixture;
using test::kForward;
using test::kGrad;

static std::string case_prefix(const std::string& kind, int k) {
  return kind + "." + std::to_string(k) + ".";
}

TEST_CASE("fixture: bilinear align_corners=True matches F.interpolate, forward and backward") {
  const Fixture fx("resize");
  Context ctx(Device::CPU);
  for (int k = 0; k < fx.cases("bilinear"); ++k) {
    const std::string c = case_prefix("bilinear", k);
    const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w");
    INFO(c << " " << x.shape().str() << " -> " << dy.shape().str());
    Tensor y(dy.shape(), Device::CPU), dx(x.shape(), Device::CPU);
    bilinear_forward(ctx, x, y);
    fx.expect(c + "y", y, kForward);
    bilinear_backward(ctx, dy, dx, 0.f);
    fx.expect(c + "dx", dx, kGrad);
  }
}

TEST_CASE("fixture: nearest resize of maps, labels and masks matches F.interpolate(nearest)") {
  const Fixture fx("resize");
  Context ctx(Device::CPU);
  for (int k = 0; k < fx.cases("nearest"); ++k) {
    const std::string c = case_prefix("nearest", k);
    const Tensor x = fx.tensor(c + "x");
    Tensor y(fx.shape(c + "y"), Device::CPU);
    nearest_forward(ctx, x, y);
    fx.expect(c + "y", y, test::kExact);  // a gather: bit-exact
  }
  // Case 1 is 513 -> 189 rows, the float32 index rule of SPEC (top).
  for (int k = 0; k < fx.cases("nearest_labels"); ++k) {
    const std::string c = case_prefix("nearest_labels", k);
    const Labels x = fx.labels(c + "x");
    Labels y(fx.shape(c + "y"), Device::CPU);
    nearest_forward(ctx, x.view(), y.view());
    fx.expect(c + "y", y.view());
  }
  const std::string c = case_prefix("nearest_mask", 0);
  const Mask x = fx.mask(c + "x");
  Mask y(fx.shape(c + "y"), Device::CPU);
  nearest_forward(ctx, x.view(), y.view());
  fx.expect(c + "y", y.view());
}

TEST_CASE("fixture: softmax over channels matches F.softmax(dim=1)") {
  const Fixture fx("loss");
  Context ctx(Device::CPU);
  const std::string c = case_prefix("softmax", 0);
  const Tensor x = fx.tensor(c + "x"), dy = fx.tensor(c + "w");
  Tensor y(x.shape(), Device::CPU), dx(x.shape(), Device::CPU);
  softmax_forward(ctx, x, y);
  fx.expect(c + "y", y, kForward);
  softmax_backward(ctx, y, dy, dx, 0.f);
  fx.expect(c + "dx", dx, kGrad);
}

// Cross-entropy of `logits` against `labels`, scaled by the stored scalar w, against the stored
// loss and gradient.
static void check_ce(Context& ctx, const Fixture& fx, const std::string& c, const Tensor& logits,
                     const Labels& labels) {
  const CeResult r = cross_entropy_forward(ctx, logits, labels.view());
  CHECK(r.valid == fx.meta_int(c + "valid"));
  test::check_close(c + "loss", std::vector<float>{r.loss}, fx.floats(c + "loss"), kForward);
  const float w = fx.floats(c + "w").at(0);
  Tensor dlogits(logits.shape(), Device::CPU);
  cross_entropy_backward(ctx, logits, labels.view(), w, dlogits, 0.f);
  fx.expect(c + "dlogits", dlogits, kGrad);
}

TEST_CASE("fixture: cross-entropy with ignore 255 matches F.cross_entropy; all-ignored gives 0") {
  const Fixture fx("loss");
  Context ctx(Device::CPU);
  REQUIRE(fx.cases("ce") == 2);
  for (int k = 0; k < fx.cases("ce"); ++k) {
    const std::string c = case_prefix("ce", k);
    const std::string valid = fx.meta(c + "valid");  // read here: INFO evaluates lazily
    INFO(c << " valid pixels " << valid);
    REQUIRE(fx.meta_int(c + "ignore_index") == kIgnoreLabel);
    check_ce(ctx, fx, c, fx.tensor(c + "logits"), fx.labels(c + "labels"));
  }
}

TEST_CASE("fixture: OHEM selection matches the public ProbOhemCrossEntropy2d in all branches") {
  const Fixture fx("loss");
  Context ctx(Device::CPU);
  REQUIRE(fx.cases("ohem") == 3);
  for (int k = 0; k < fx.cases("ohem"); ++k) {
    const std::string c = case_prefix("ohem", k);
    const std::string what = fx.meta(c + "branch") + ", min_kept " + fx.meta(c + "min_kept") +
                             " of " + fx.meta(c + "input_valid") + " valid";
    INFO(c << " " << what);  // INFO evaluates lazily: the metadata is read above
    const Tensor logits = fx.tensor(c + "logits");
    const Labels labels = fx.labels(c + "input_labels");
    Labels kept(labels.shape(), Device::CPU);
    ohem_select(ctx, logits, labels.view(), fx.meta_float(c + "thresh"),
                fx.meta_int(c + "min_kept"), kept.view());
    fx.expect(c + "labels", kept.view());  // the kept map, exactly
    check_ce(ctx, fx, c, logits, kept);
  }
}
