// Confusion matrix and scores (u2pl/eval/metrics.h) against a hand-computed example: ignore pixels
// skipped, IoU = I / (U + 1e-10), mean over all K classes (absent classes count as 0), pixel and
// mean accuracy; out-of-range labels and predictions are errors that add nothing.
#include <doctest/doctest.h>

#include "engine/check.h"
#include "u2pl/eval/metrics.h"

using namespace u2pl;

namespace {
// label: 0 0 1 1 2 255 0 2 / pred: 0 1 1 1 0 2 0 2 gives, rows = label, columns = prediction,
//   [2 1 0]   row sums 3 2 2, column sums 3 3 1, diagonal 2 2 1 (7 counted pixels)
//   [0 2 0]
//   [1 0 1]
const std::vector<uint8_t> kLabel{0, 0, 1, 1, 2, 255, 0, 2};
const std::vector<int32_t> kPred{0, 1, 1, 1, 0, 2, 0, 2};
}  // namespace

TEST_CASE("metrics: confusion matrix of a hand-computed example") {
  ConfusionMatrix cm(3);
  cm.add(kPred, kLabel);
  const int64_t want[3][3] = {{2, 1, 0}, {0, 2, 0}, {1, 0, 1}};
  for (int l = 0; l < 3; ++l)
    for (int p = 0; p < 3; ++p) CHECK(cm.at(l, p) == want[l][p]);
  CHECK(cm.total() == 7);

  const Scores s = score(cm);
  // IoU: 2/(3+3−2), 2/(2+3−2), 1/(2+1−1); accuracy: 2/3, 2/2, 1/2.
  CHECK(s.iou[0] == doctest::Approx(0.5).epsilon(1e-9));
  CHECK(s.iou[1] == doctest::Approx(2.0 / 3).epsilon(1e-9));
  CHECK(s.iou[2] == doctest::Approx(0.5).epsilon(1e-9));
  CHECK(s.miou == doctest::Approx((0.5 + 2.0 / 3 + 0.5) / 3).epsilon(1e-9));
  CHECK(s.pixel_acc == doctest::Approx(5.0 / 7).epsilon(1e-9));
  CHECK(s.acc[1] == doctest::Approx(1.0).epsilon(1e-9));
  CHECK(s.mean_acc == doctest::Approx((2.0 / 3 + 1 + 0.5) / 3).epsilon(1e-9));
}

TEST_CASE("metrics: classes absent from the split count as 0 in the means, never NaN") {
  // Class 3 never appears; class 2 is predicted but never labeled.
  ConfusionMatrix cm(4);
  cm.add(std::vector<int32_t>{0, 1, 2}, std::vector<uint8_t>{0, 1, 1});
  const Scores s = score(cm);
  CHECK(s.iou[0] == doctest::Approx(1.0));
  CHECK(s.iou[1] == doctest::Approx(0.5));
  CHECK(s.iou[2] == 0.0);
  CHECK(s.iou[3] == 0.0);
  CHECK(s.acc[2] == 0.0);
  CHECK(s.acc[3] == 0.0);
  CHECK(s.miou == doctest::Approx(1.5 / 4));
  CHECK(s.mean_acc == doctest::Approx(1.5 / 4));
  CHECK(s.pixel_acc == doctest::Approx(2.0 / 3));

  const Scores empty = score(ConfusionMatrix(2));  // nothing counted at all
  CHECK(empty.miou == 0.0);
  CHECK(empty.pixel_acc == 0.0);
  CHECK(empty.mean_acc == 0.0);
}

TEST_CASE("metrics: accumulation over images and merging equal one pass") {
  ConfusionMatrix whole(3), parts(3), other(3);
  whole.add(kPred, kLabel);
  parts.add(kPred.data(), kLabel.data(), 4);
  other.add(kPred.data() + 4, kLabel.data() + 4, 4);
  parts.merge(other);
  for (int l = 0; l < 3; ++l)
    for (int p = 0; p < 3; ++p) CHECK(parts.at(l, p) == whole.at(l, p));
  CHECK_THROWS_WITH_AS(parts.merge(ConfusionMatrix(4)), doctest::Contains("cannot merge K = 4"), Error);
}

TEST_CASE("metrics: labels and predictions outside the classes are errors") {
  ConfusionMatrix cm(3);
  CHECK_THROWS_WITH_AS(cm.add(std::vector<int32_t>{0, 0}, std::vector<uint8_t>{0, 3}),
                       doctest::Contains("label 3 at pixel 1 is neither a class in [0, 3) nor the ignore label 255"),
                       Error);
  CHECK_THROWS_WITH_AS(cm.add(std::vector<int32_t>{0, 3}, std::vector<uint8_t>{0, 255}),
                       doctest::Contains("prediction 3 at pixel 1 is not a class in [0, 3)"), Error);
  CHECK_THROWS_WITH_AS(cm.add(std::vector<int32_t>{-1}, std::vector<uint8_t>{1}),
                       doctest::Contains("prediction -1"), Error);
  CHECK_THROWS_WITH_AS(cm.add(std::vector<int32_t>{0}, std::vector<uint8_t>{0, 0}),
                       doctest::Contains("1 predicted pixels for 2 labels"), Error);
  CHECK(cm.total() == 0);  // a failed add counts nothing

  ConfusionMatrix other_ignore(3, 250);  // a configured ignore label is skipped likewise
  other_ignore.add(std::vector<int32_t>{1, 2}, std::vector<uint8_t>{250, 2});
  CHECK(other_ignore.total() == 1);
  CHECK_THROWS_WITH_AS(ConfusionMatrix(3, 1), doctest::Contains("ignore_label 1 is a class index"), Error);
}
